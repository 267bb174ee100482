"""Aggregations for windowed tables: Count(), Sum(field), Avg(field), Min(field), Max(field).

Each keeps a small JSON-friendly state (so it fits the table's changelog) and
turns it into a result when the window is read or closed.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

Field = str | Callable[[Any], Any] | None


def _getter(field: Field) -> Callable[[Any], Any]:
    if field is None:
        return lambda value: value
    if callable(field):
        return field
    name = field
    attribute = operator.attrgetter(name)  # a C call for records; dicts take the slow branch

    def get(value: Any) -> Any:
        try:
            return attribute(value)
        except AttributeError:
            return value[name]

    return get


class Aggregation:
    """A named fold over the values of a window."""

    kind = "aggregation"

    def __init__(self, field: Field = None) -> None:
        self.field = field
        self.get = _getter(field)

    def __repr__(self) -> str:
        field = self.field if isinstance(self.field, str) or self.field is None else "<fn>"
        return f"{self.kind}({field or ''})"

    def initial(self) -> Any:
        raise NotImplementedError

    def add(self, state: Any, value: Any) -> Any:
        raise NotImplementedError

    def result(self, state: Any) -> Any:
        return state


class Count(Aggregation):
    kind = "count"

    def initial(self) -> int:
        return 0

    def add(self, state: Any, value: Any) -> int:
        return state + 1  # type: ignore[no-any-return]


class Sum(Aggregation):
    kind = "sum"

    def initial(self) -> float:
        return 0.0

    def add(self, state: Any, value: Any) -> float:
        return state + self.get(value)  # type: ignore[no-any-return]


class Avg(Aggregation):
    kind = "avg"

    def initial(self) -> list[float]:
        return [0.0, 0.0]  # sum, count

    def add(self, state: Any, value: Any) -> list[float]:
        state[0] += self.get(value)
        state[1] += 1
        return state  # type: ignore[no-any-return]

    def result(self, state: Any) -> float | None:
        return state[0] / state[1] if state[1] else None


class Min(Aggregation):
    kind = "min"

    def initial(self) -> Any:
        return None

    def add(self, state: Any, value: Any) -> Any:
        item = self.get(value)
        return item if state is None or item < state else state


class Max(Aggregation):
    kind = "max"

    def initial(self) -> Any:
        return None

    def add(self, state: Any, value: Any) -> Any:
        item = self.get(value)
        return item if state is None or item > state else state


__all__ = ["Aggregation", "Avg", "Count", "Max", "Min", "Sum"]

"""Typed records: declared like dataclasses, decoded from JSON without a dict in between."""

from __future__ import annotations

from typing import Any, Self

import msgspec


class Record(msgspec.Struct, kw_only=True):
    """Base class for event types.

    ``class Click(grey.Record): user_id: str; amount: float = 0.0`` gives a
    typed, slotted class that JSON decodes into directly and validates.
    """

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict (nested records stay records)."""
        return msgspec.structs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build and validate a record from a dict."""
        return msgspec.convert(data, cls)

"""Tables for people: contents rendered as text, for logs, a REPL, or ``grey tables``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    try:
        return msgspec.json.encode(value).decode()
    except TypeError:
        return repr(value)


def render(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], limit: int | None = 100) -> str:
    """A boxed text table; at most ``limit`` rows, with a note of how many were left out."""
    cells = [[_cell(v) for v in row] for row in rows]
    shown = cells if limit is None else cells[:limit]
    widths = [max([len(h), *(len(r[i]) for r in shown)]) for i, h in enumerate(headers)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    out = [title, line, fmt(headers), line, *(fmt(r) for r in shown), line]
    if len(shown) < len(cells):
        out.append(f"... {len(cells) - len(shown)} more row(s)")
    return "\n".join(out)

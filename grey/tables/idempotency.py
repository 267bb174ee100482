"""Idempotency keys: which (topic, partition, offset, processor) an effect was already applied for.

A key is ``{topic}-{partition}-{offset}-{processor_id}``, as in the case study.
The keys live in a table (so in RocksDB and a changelog, recovered like any
table) partitioned like the events they name, and expire after ``retention``
seconds. A sink that appends one record per event checks a key before writing
and marks it after, so a replay after a crash does not write twice.
"""

from __future__ import annotations

import time
from collections import deque

from grey.agents.event import Event
from grey.tables.table import Table


def idempotency_key(topic: str, partition: int, offset: int, processor_id: str) -> str:
    """``{topic}-{partition}-{offset}-{processor_id}``."""
    return f"{topic}-{partition}-{offset}-{processor_id}"


class IdempotencyKeys:
    """Check and mark idempotency keys; build with ``IdempotencyKeys(app.Table("idempotency"))``."""

    def __init__(self, table: Table, *, retention: float = 7 * 86400.0) -> None:
        if table.listener is not None:
            raise ValueError(f"table {table.name!r} already has a view; give idempotency keys their own table")
        if retention <= 0:
            raise ValueError(f"retention must be > 0 seconds, got {retention}")
        self.table = table
        self.retention = retention
        self.expired = 0
        self._marks: dict[int, deque[tuple[float, bytes]]] = {}  # partition -> (marked at, key) in time order
        table.listener = self

    def key_for(self, event: Event, processor_id: str) -> str:
        return idempotency_key(event.topic, event.partition, event.offset, processor_id)

    def seen(self, key: str) -> bool:
        """Was this key marked (and not yet expired)?"""
        return key in self.table

    def mark(self, key: str, now: float | None = None) -> None:
        """Record the key as done (in the partition of the event in hand)."""
        marked_at = time.time() if now is None else now
        self.table[key] = marked_at
        key_bytes = self.table.key_codec.dumps(key)
        self._marks.setdefault(self.table.partition_of(key_bytes), deque()).append((marked_at, key_bytes))

    def expire(self, now: float | None = None) -> int:
        """Delete keys marked more than ``retention`` seconds ago; returns how many."""
        cutoff = (time.time() if now is None else now) - self.retention
        removed = 0
        for number, marks in self._marks.items():
            if number not in self.table.owned:
                continue
            while marks and marks[0][0] <= cutoff:
                _, key_bytes = marks.popleft()
                self.table.write(number, key_bytes, None)
                removed += 1
        self.expired += removed
        return removed

    # -- the table's listener protocol ---------------------------------

    def partition_ready(self, number: int) -> None:
        marks: list[tuple[float, bytes]] = [(float(v), k) for k, v in self.table.raw_items(number)]
        self._marks[number] = deque(sorted(marks))

    def partition_closed(self, number: int) -> None:
        self._marks.pop(number, None)

    async def tick(self) -> None:
        self.expire()

    def __repr__(self) -> str:
        return f"<IdempotencyKeys {self.table.name} retention={self.retention}s>"


"""Per-partition bookkeeping: which fetched offsets are done, so commits never skip work."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol

from grey.transport.base import TP, Message


class Progress(Protocol):
    """How far one agent instance got through its share of a slice."""

    messages: Sequence[Message]
    done: int


class Slice:
    """One fetched run of a partition's offsets, done when every agent acked every event.

    When a single agent instance reads the partition (``solo``), its progress
    inside the slice is committable too, so a stop or a checkpoint in the
    middle of a fetched batch commits exactly what was processed.
    """

    __slots__ = ("last", "remaining", "solo")

    def __init__(self, last: int) -> None:
        self.last = last
        self.remaining = 0
        self.solo: Progress | None = None


class PartitionState:
    """A partition this worker owns, from assignment until revocation.

    A new object is made on every assignment, so chunks fetched under an old
    assignment are recognised (``active`` is false) and skipped, not processed.
    """

    __slots__ = ("active", "committed", "done_offset", "group", "pending", "stopped", "tp")

    def __init__(self, tp: TP, committed: int | None = None, group: str = "") -> None:
        self.tp = tp
        self.group = group  # the partition group: partition p of co-partitioned topics, committed together
        self.active = True
        self.stopped = False  # an agent failed on this partition; nothing more is processed
        self.pending: deque[Slice] = deque()
        self.done_offset: int | None = None  # next offset to commit, once known
        self.committed = committed

    def track(self, last_offset: int) -> Slice:
        part = Slice(last_offset)
        self.pending.append(part)
        return part

    def committable(self) -> int | None:
        """The offset to commit: one past the last event of the done prefix."""
        pending = self.pending
        while pending and pending[0].remaining <= 0:
            done = pending.popleft()
            done.solo = None
            self.done_offset = done.last + 1
        if pending:
            solo = pending[0].solo
            if solo is not None and solo.done > 0:
                return solo.messages[solo.done - 1].offset + 1
        return self.done_offset


def due_offsets(states: Iterable[PartitionState]) -> dict[TP, int]:
    """The offsets to commit where they moved since the last commit (one past the last done event)."""
    offsets: dict[TP, int] = {}
    for state in states:
        offset = state.committable()
        if offset is not None and offset != state.committed:
            offsets[state.tp] = offset
    return offsets


class PartitionLost(RuntimeError):
    """The partition group of the event in hand was given up (fenced, or revoked) while it was processed."""

"""Staged sinks: records are added as events are processed and written at the checkpoint.

A checkpoint calls ``flush(marker)`` for each partition group it commits. The
marker (group, position) goes with the data, and a sink that declares
``delivery = "exactly_once"`` applies a batch only if its marker is newer than
the one it stored last, in the same atomic step as the data. Writes are
upserts of absolute values (a total, a document), so a replay whose batch
boundaries differ from an aborted attempt still converges to the same result.

Agents stage records either by listing the sink in ``@app.agent(...,
sink=[redis])`` (every yielded value is staged) or by calling
``sink.add(value)`` while they hold an event; the record belongs to that
event's partition group.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from grey.agents.stream import current_stream
from grey.transport.base import TP

Delivery = Literal["exactly_once", "at_least_once"]


@dataclass(frozen=True, slots=True)
class SinkMarker:
    """Where a partition group's checkpoint ends: the group and a position that only grows.

    With one source topic the position is the last source offset the batch
    covers; with several co-partitioned topics it is the sum of their next offsets.
    """

    group: str
    offset: int


class Committing(Protocol):
    """A partition of a group at a checkpoint (grey.runtime.partitions.PartitionState)."""

    tp: TP
    committed: int | None


def marker_position(partitions: Iterable[Committing], offsets: Mapping[TP, int]) -> int:
    """A group's marker position once ``offsets`` commit: the sum of its partitions' next offsets (the
    one committing now, else the last committed, else 0) less one; with one topic, the last offset."""
    return sum(offsets.get(p.tp, p.committed if p.committed is not None else 0) for p in partitions) - 1


class StagedSink:
    """Base of sinks written at checkpoints (Redis; S3 and Elasticsearch follow on the same protocol).

    Subclasses implement ``start``, ``stop``, ``stage`` and ``flush``; staging is
    per partition group, so a group's checkpoint writes only its own records.
    """

    delivery: Delivery = "at_least_once"
    name: str = "sink"

    async def start(self, app_id: str = "") -> None:
        """Connect; ``app_id`` (given by the worker) keeps apps' markers apart in a shared store."""
        return None

    async def stop(self) -> None:
        return None

    def stage(self, group: str, value: Any) -> None:
        """Keep one result for the group's next checkpoint."""
        raise NotImplementedError

    async def flush(self, marker: SinkMarker) -> bool:
        """Write the group's staged records with the marker; False if the marker was not newer (skipped)."""
        raise NotImplementedError

    def discard(self, group: str) -> None:
        """Drop what is staged for the group (its checkpoint was aborted, or the group moved away)."""
        raise NotImplementedError

    def staged_groups(self) -> set[str]:
        """The groups with records waiting for a checkpoint."""
        raise NotImplementedError

    def add(self, value: Any) -> None:
        """Stage a result of the event (or batch) the calling agent holds."""
        stream = current_stream.get()
        group = stream.group if stream is not None else None
        if group is None:
            raise RuntimeError(
                f"{self!r}.add() is called outside an agent's event: staged sinks commit with the partition "
                "group of the event in hand; call it from the agent while it holds the event"
            )
        self.stage(group, value)

    async def send(self, value: Any, key: Any = None) -> None:
        """As an agent's ``sink=[...]``: stage every yielded value."""
        self.add(value)

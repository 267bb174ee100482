"""The staged sink protocol: records are added as events are processed and written at the checkpoint.

A checkpoint calls ``flush(marker)`` for each partition group it commits. The
marker (group, last offset) goes with the data, and a sink that declares
``delivery = "exactly_once"`` applies a batch only if its marker is newer than
the one it stored last, in the same atomic step as the data. Writes are
upserts of absolute values (a total, a document), so a replay whose batch
boundaries differ from an aborted attempt still converges to the same result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Delivery = Literal["exactly_once", "at_least_once"]


@dataclass(frozen=True, slots=True)
class SinkMarker:
    """Where a partition group's checkpoint ends: its id and the last source offset it covers."""

    group: str
    offset: int


class StagedSink(Protocol):
    """A sink written at checkpoints (Redis, S3, Elasticsearch, ...)."""

    delivery: Delivery

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def add(self, group: str, value: Any) -> None:
        """Stage one result for the group's next checkpoint."""
        ...
    async def flush(self, marker: SinkMarker) -> bool:
        """Write the group's staged batch with its marker; False if the marker was not newer (skipped)."""
        ...
    def discard(self, group: str) -> None:
        """Drop what is staged for the group (its checkpoint was aborted)."""
        ...

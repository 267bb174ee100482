"""The checkpoint: one object owns the order in which a worker makes its progress durable.

At-least-once (and at-most-once's table flushes), for the partitions given:

1. each table moves its write buffer aside and sends the latest value per key
   to its changelog;
2. the producer is flushed, so everything the events sent (to topics and to
   changelogs) is on the broker;
3. each table writes the flushed buffer into its store, in one batch with the
   changelog offset it reflects;
4. each staged sink writes the records of every partition group whose offsets
   move, with the group's marker;
5. the consumer commits the source offsets.

A crash anywhere before 5 replays the events since the last checkpoint; it
can never leave an offset committed for work that is not durable. The
exactly-once checkpoint (``transactions.py``, a transaction per partition
group) follows the same shape inside a transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from grey.runtime.partitions import PartitionState, due_offsets
from grey.sinks.staged import SinkMarker, StagedSink, marker_position
from grey.tables.table import Table
from grey.transport import TP, Consumer, Producer

log = logging.getLogger(__name__)


class Checkpoint:
    """Commits the done prefix of partitions, with the tables' changes, in a safe order."""

    def __init__(self, consumer: Consumer, producer: Producer, tables: Sequence[Table],
                 sinks: Sequence[StagedSink] = (), *, commit_offsets: bool = True) -> None:
        self.consumer = consumer
        self.producer = producer
        self.tables = tables
        self.sinks = sinks
        self.commit_offsets = commit_offsets  # False under at-most-once: offsets go at fetch time

    def due_offsets(self, states: Iterable[PartitionState]) -> dict[TP, int]:
        """The offsets that moved since the last commit (one past the last done event)."""
        return due_offsets(states) if self.commit_offsets else {}

    async def run(self, states: Iterable[PartitionState]) -> dict[TP, int]:
        """Make the partitions' progress durable; returns the offsets committed ({} if nothing or failed)."""
        states = list(states)
        offsets = self.due_offsets(states)
        if not offsets and not any(t.has_changes() for t in self.tables):
            return {}
        try:
            sent = [(table, await table.send_changes(self.producer)) for table in self.tables]
            await self.producer.flush()  # what the events sent must be durable before their offsets
            for table, deliveries in sent:  # changelog first, then the store with its offset
                await table.apply_changes(deliveries)
            await self._flush_sinks(states, offsets)
            if offsets:
                await self.consumer.commit(offsets)
        except Exception as exc:  # a rebalance took the partitions: the new owner redoes the work
            log.warning("checkpoint of %s failed: %r; the events will be processed again",
                        ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(offsets)) or "tables", exc)
            return {}
        for state in states:
            if state.tp in offsets:
                state.committed = offsets[state.tp]
        log.debug("committed %s", offsets)
        return offsets

    async def _flush_sinks(self, states: list[PartitionState], offsets: dict[TP, int]) -> None:
        """Write each group's staged records with its marker; a group whose offsets did not move waits."""
        if not self.sinks:
            return
        groups: dict[str, list[PartitionState]] = {}
        for state in states:
            groups.setdefault(state.group, []).append(state)
        for name, members in groups.items():
            if not any(s.tp in offsets for s in members):
                continue
            position = marker_position(members, offsets)
            for sink in self.sinks:
                if name in sink.staged_groups():
                    await sink.flush(SinkMarker(name, position))

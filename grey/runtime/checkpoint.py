"""The checkpoint: one object owns the order in which a worker makes its progress durable.

At-least-once (and at-most-once's table flushes), for the partitions given:

1. each table moves its write buffer aside and sends the latest value per key
   to its changelog;
2. the producer is flushed, so everything the events sent (to topics and to
   changelogs) is on the broker;
3. each table writes the flushed buffer into its store, in one batch with the
   changelog offset it reflects;
4. the consumer commits the source offsets.

A crash anywhere before 4 replays the events since the last checkpoint; it
can never leave an offset committed for work that is not durable. The
exactly-once checkpoint (a transaction per partition group) follows the same
shape inside a transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from grey.runtime.partitions import PartitionState
from grey.tables.table import Table
from grey.transport import TP, Consumer, Producer

log = logging.getLogger(__name__)


class Checkpoint:
    """Commits the done prefix of partitions, with the tables' changes, in a safe order."""

    def __init__(self, consumer: Consumer, producer: Producer, tables: Sequence[Table], *,
                 commit_offsets: bool = True) -> None:
        self.consumer = consumer
        self.producer = producer
        self.tables = tables
        self.commit_offsets = commit_offsets  # False under at-most-once: offsets go at fetch time

    def due_offsets(self, states: Iterable[PartitionState]) -> dict[TP, int]:
        """The offsets that moved since the last commit (one past the last done event)."""
        if not self.commit_offsets:
            return {}
        offsets: dict[TP, int] = {}
        for state in states:
            offset = state.committable()
            if offset is not None and offset != state.committed:
                offsets[state.tp] = offset
        return offsets

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

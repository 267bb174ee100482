"""Exactly-once: one transactional producer per partition group, and the checkpoint that commits it.

A partition group is partition *p* of every co-partitioned source topic (and
of the tables' changelogs). Its producer's ``transactional.id`` is stable,
``{transactional_id_prefix}{app_id}-{group}``, with the group named
``{topic}-{p}`` after the first source topic of its partition count. aiokafka
has no KIP-447, so this stable id is what fences a zombie: the worker that is
assigned the group starts a producer with the id, which bumps its epoch, ends
whatever transaction the previous owner left open, and makes every later call
of the old producer fail with :class:`ProducerFencedError`. Only then are the
group's committed offsets read and its partitions positioned there.

The checkpoint of a group (the runtime calls it when every agent has
finished what it was handed, so the transaction holds exactly the effects of
the offsets it commits), in order:

1. tables send the group's buffered writes to their changelogs, inside the
   transaction (most of them earlier, by :meth:`Transactions.presend`, while
   the agents still ran), and the producer is flushed;
2. each staged sink writes the group's records with the marker (group,
   position), skipping a batch it already applied;
3. the markers go to the app's compacted markers topic, inside the transaction;
4. the source offsets are added to the transaction, and it commits;
5. only then do the tables write the flushed buffers into their stores (with
   the agents running again: reads see the flushed buffer until it is written).

Any failure before 4 aborts: the transaction, the table buffers and the staged
records are dropped, the partitions are positioned back at the committed
offsets and paused for an exponential backoff, and the events are processed
again. After ``retry_count`` failures in a row the group stops (or the worker
crashes, with ``on_error="crash"``). A fenced producer means another worker
owns the group: it is given up, without stopping the worker, and the consumer
asks the group coordinator for a new assignment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from grey.config import Settings
from grey.observability.metrics import COMMIT_SECONDS, TRANSACTIONS, TRANSACTIONS_ABORTED, TRANSACTIONS_COMMITTED
from grey.runtime.partitions import PartitionLost, PartitionState, due_offsets
from grey.sinks.staged import SinkMarker, StagedSink, marker_position
from grey.tables.table import Table
from grey.transport import TP, Consumer, Producer, ProducerFencedError, Transport

log = logging.getLogger(__name__)

#: The longest pause between retries of a failing group, in seconds.
MAX_BACKOFF = 30.0


#: Tables and the changelog deliveries of their flushed buffers, per partition.
Sent = list[tuple[Table, dict[int, Awaitable[int]]]]


@dataclass(slots=True)
class Committed:
    """What a checkpoint committed, and the store writes that follow it (step 5)."""

    offsets: dict[TP, int] = field(default_factory=dict)
    stores: Sent = field(default_factory=list)

    async def write_stores(self) -> None:
        """Write the committed buffers into the stores. The runtime calls it with the agents running
        again: until it is done, reads find the values in the buffer being flushed."""
        for table, deliveries in self.stores:
            await table.apply_changes(deliveries)


@dataclass(slots=True, eq=False)
class PartitionGroup:
    """A partition group this worker owns, with its producer and its open transaction."""

    name: str
    number: int
    transactional_id: str
    tps: set[TP] = field(default_factory=set)
    producer: Producer | None = None
    dirty: bool = False  # something was sent in the open transaction
    failed: BaseException | None = None  # an agent failed on it: abort at the checkpoint, then stop
    failures: int = 0  # checkpoints failed in a row
    stopped: bool = False
    sent: dict[Table, dict[int, Awaitable[int]]] = field(default_factory=dict)  # changelog sent in this txn


class Transactions:
    """The partition groups of one worker and their transactions."""

    def __init__(
        self,
        conf: Settings,
        transport: Transport,
        consumer: Consumer,
        partitions: dict[TP, PartitionState],
        tables: Sequence[Table],
        sinks: Sequence[StagedSink],
        markers_topic: str | None,
        crash: Callable[[BaseException], None],
    ) -> None:
        self.conf = conf
        self.transport = transport
        self.consumer = consumer
        self.partitions = partitions  # the runtime's own dict: aborts replace its states
        self.tables = tables
        self.sinks = sinks
        self.markers_topic = markers_topic
        self.crash = crash
        self.groups: dict[str, PartitionGroup] = {}
        self._resumes: dict[str, asyncio.TimerHandle] = {}
        self._encode = msgspec.json.Encoder().encode
        self.committed = 0
        self.aborted = 0
        self._app = conf.id
        self._metric_begun = TRANSACTIONS.labels(conf.id)
        self._metric_committed = TRANSACTIONS_COMMITTED.labels(conf.id)
        self._metric_seconds = COMMIT_SECONDS.labels(conf.id)

    # -- routing sends ------------------------------------------------------

    def producer_for(self, group: str) -> Producer:
        """The producer whose open transaction the group's effects go into."""
        held = self.groups.get(group)
        if held is None or held.producer is None or held.stopped:
            raise PartitionLost(f"partition group {group} is no longer processed by this worker "
                                "(it moved to another worker, or it stopped after errors)")
        held.dirty = True
        return held.producer

    def group_of_partition(self, number: int) -> str | None:
        """The group holding partition ``number`` (windows closing on the clock know only that)."""
        for group in self.groups.values():
            if group.number == number:
                return group.name
        return None

    # -- assignment -------------------------------------------------------------

    async def assign(self, states: Sequence[PartitionState]) -> None:
        """Open the groups of newly assigned partitions: fence the previous owner, then read its offsets."""
        fresh: list[PartitionGroup] = []
        for state in states:
            group = self.groups.get(state.group)
            if group is None:
                group = self.groups[state.group] = PartitionGroup(
                    state.group, state.tp.partition,
                    f"{self.conf.transactional_id_prefix}{self.conf.id}-{state.group}")
                fresh.append(group)
            group.tps.add(state.tp)
        await asyncio.gather(*(self._open(group) for group in fresh))
        # Read the offsets only now: starting the producer waited for the old owner's transaction to end.
        reset_earliest = self.conf.client.auto_offset_reset == "earliest"
        unknown = []
        for state in states:
            committed = await self.consumer.committed(state.tp)
            if committed is None:
                unknown.append(state)
            else:
                self.consumer.seek(state.tp, committed)
                state.committed = committed
        if unknown:
            tps = [s.tp for s in unknown]
            found = await (self.consumer.beginning_offsets(tps) if reset_earliest
                           else self.consumer.end_offsets(tps))
            for state in unknown:
                self.consumer.seek(state.tp, found[state.tp])
                state.committed = found[state.tp]

    async def _open(self, group: PartitionGroup) -> None:
        producer = self.transport.producer(self.conf.client, transactional_id=group.transactional_id)
        group.producer = producer
        try:
            await producer.start()  # init_transactions: fences the previous producer with this id
            await self._begin(group)
        except BaseException:  # also a cancel (the worker stops while partitions are assigned)
            group.producer = None
            await producer.stop()
            raise
        log.debug("partition group %s: transactional id %s", group.name, group.transactional_id)

    async def _begin(self, group: PartitionGroup) -> None:
        assert group.producer is not None
        await group.producer.begin_transaction()
        group.dirty = False
        self._metric_begun.inc()

    async def release(self, tps: Iterable[TP]) -> None:
        """Close the groups of revoked partitions (after their last checkpoint)."""
        names = {g.name for g in self.groups.values() if g.tps & set(tps)}
        await asyncio.gather(*(self._close(self.groups.pop(name)) for name in names))

    async def close(self) -> None:
        groups, self.groups = list(self.groups.values()), {}
        await asyncio.gather(*(self._close(group) for group in groups))

    async def _close(self, group: PartitionGroup) -> None:
        handle = self._resumes.pop(group.name, None)
        if handle is not None:
            handle.cancel()
        producer, group.producer = group.producer, None
        if producer is None:
            return
        try:
            if group.dirty:  # whatever was sent since the last checkpoint is not to be kept
                await producer.abort_transaction()
        except Exception as exc:  # fenced or broken: the broker ends the transaction in any case
            log.debug("partition group %s: abort on close failed: %r", group.name, exc)
        try:
            async with asyncio.timeout(self.conf.shutdown_timeout):
                await producer.stop()
        except Exception as exc:
            log.warning("partition group %s: producer did not stop cleanly: %r", group.name, exc)

    # -- errors reported by the runtime -----------------------------------------

    def fail(self, name: str, exc: BaseException) -> None:
        """An agent failed on the group's events: stop processing it; the checkpoint aborts it."""
        group = self.groups.get(name)
        if group is not None:
            group.failed = exc
            self._halt(group)

    def _halt(self, group: PartitionGroup) -> None:
        """Process nothing more of the group: queued chunks are skipped, its partitions fetch nothing."""
        for tp in group.tps:
            state = self.partitions.get(tp)
            if state is not None:
                state.stopped = True
        self.consumer.pause(*group.tps)

    # -- the checkpoint ---------------------------------------------------------

    async def presend(self) -> None:
        """Send the tables' buffered writes into the open transactions while the agents still run.

        The checkpoint then sends only what changed since, so the moment it holds
        the agents is short. A failed send surfaces at the checkpoint, which aborts.
        """
        groups = [g for g in self.groups.values() if g.producer is not None and not g.stopped and g.failed is None]
        outcomes = await asyncio.gather(*(self._send_changes(group) for group in groups), return_exceptions=True)
        for group, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.debug("partition group %s: early changelog send failed: %r", group.name, outcome)

    async def _send_changes(self, group: PartitionGroup) -> None:
        assert group.producer is not None
        for table in self.tables:
            if table.has_changes(group.number):
                deliveries = await table.send_changes(group.producer, [group.number], more=True)
                if deliveries:
                    group.dirty = True
                    group.sent.setdefault(table, {}).update(deliveries)

    async def commit(self, states: Sequence[PartitionState]) -> Committed:
        """Commit the transaction of every group of ``states`` (steps 1-4; the result does step 5)."""
        by_group: dict[str, list[PartitionState]] = {}
        for state in states:
            by_group.setdefault(state.group, []).append(state)
        results = await asyncio.gather(*(self._commit_group(group, by_group[name])
                                         for name, group in list(self.groups.items()) if name in by_group))
        done = Committed()
        for offsets, sent in results:
            done.offsets.update(offsets)
            done.stores.extend(sent)
        return done

    async def _commit_group(self, group: PartitionGroup, states: list[PartitionState]) -> tuple[dict[TP, int], Sent]:
        if group.producer is None or group.stopped:
            return {}, []
        if group.failed is not None:
            await self._abort(group, group.failed, reason="agent_error", stop=True)
            return {}, []
        offsets = due_offsets(states)
        # A marker only grows with the offsets: records staged while none moved wait for one that does.
        staged = [sink for sink in self.sinks if group.name in sink.staged_groups()] if offsets else []
        changed = bool(group.sent) or any(table.has_changes(group.number) for table in self.tables)
        if not (offsets or staged or changed or group.dirty):
            return {}, []
        started = time.monotonic()
        producer = group.producer
        try:
            await self._send_changes(group)
            sent, group.sent = list(group.sent.items()), {}
            await producer.flush()  # a failed send fails the checkpoint here, before any sink writes
            if staged:
                position = marker_position(states, offsets)
                marker = SinkMarker(group.name, position)
                for sink in staged:
                    applied = await sink.flush(marker)
                    if self.markers_topic is not None:
                        record = {"sink": sink.name, "group": group.name, "offset": position, "applied": applied}
                        await producer.send(self.markers_topic, self._encode(record),
                                            key=f"{sink.name}|{group.name}".encode())
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.conf.group_id)
            await producer.commit_transaction()
        except ProducerFencedError as exc:
            await self._give_up(group, exc)
            return {}, []
        except Exception as exc:
            await self._abort(group, exc, reason="error")
            return {}, []
        for state in states:
            if state.tp in offsets:
                state.committed = offsets[state.tp]
        group.failures = 0
        self.committed += 1
        self._metric_committed.inc()
        self._metric_seconds.observe(time.monotonic() - started)
        try:
            await self._begin(group)
        except ProducerFencedError as exc:
            await self._give_up(group, exc)
        except Exception as exc:
            await self._abort(group, exc, reason="begin")
        return offsets, sent  # committed: now the stores may have the writes (Committed.write_stores)

    async def _abort(self, group: PartitionGroup, exc: BaseException, *, reason: str, stop: bool = False) -> None:
        """Drop the group's uncommitted work and process its events again from the committed offsets."""
        self.aborted += 1
        TRANSACTIONS_ABORTED.labels(self._app, reason).inc()
        producer = group.producer
        assert producer is not None
        try:
            async with asyncio.timeout(self.conf.client.request_timeout_ms / 1000):
                await producer.abort_transaction()
        except Exception as abort_exc:
            # Fenced, or the producer is in a fatal state. Never start a new producer with the id here:
            # if another worker owns the group now, that would fence the rightful owner. Give the group
            # up; the rejoin hands it back (with fencing, offsets and table recovery) if it is still ours.
            log.debug("partition group %s: abort failed too: %r", group.name, abort_exc)
            await self._give_up(group, exc, counted=True)
            return
        self._rewind(group)
        if stop:
            self._stop(group, exc)
            return
        group.failures += 1
        if group.failures > self.conf.retry_count:
            log.error("partition group %s: %d checkpoints failed in a row, the last with %r", group.name,
                      group.failures, exc)
            self._stop(group, exc)
            return
        backoff = min(self.conf.retry_backoff * 2 ** (group.failures - 1), MAX_BACKOFF)
        log.warning("partition group %s: checkpoint failed (%r); transaction aborted, retrying in %.1fs "
                    "(%d of %d)", group.name, exc, backoff, group.failures, self.conf.retry_count)
        self.consumer.pause(*group.tps)
        self._resumes[group.name] = asyncio.get_running_loop().call_later(backoff, self._resume, group)
        try:
            await self._begin(group)
        except ProducerFencedError as fenced:
            await self._give_up(group, fenced)
        except Exception as begin_exc:
            self._stop(group, begin_exc)

    def _rewind(self, group: PartitionGroup) -> None:
        """New partition states at the committed offsets: chunks in flight under the old ones are dropped."""
        group.sent = {}
        for table in self.tables:
            table.discard_changes(group.number)
        for sink in self.sinks:
            sink.discard(group.name)
        for tp in group.tps:
            old = self.partitions.get(tp)
            if old is None:
                continue
            old.active = False
            self.partitions[tp] = PartitionState(tp, old.committed, group.name)
            if old.committed is not None:
                self.consumer.seek(tp, old.committed)

    def _resume(self, group: PartitionGroup) -> None:
        self._resumes.pop(group.name, None)
        if self.groups.get(group.name) is group and not group.stopped:
            live = [tp for tp in group.tps if tp in self.partitions]
            if live:
                self.consumer.resume(*live)

    def _stop(self, group: PartitionGroup, exc: BaseException) -> None:
        group.stopped = True
        self._halt(group)
        if self.conf.on_error == "crash":
            self.crash(exc)
            return
        log.error("partition group %s (%s) is stopped after %r: nothing after its committed offsets is "
                  "processed until the worker restarts or the group moves (on_error='stop_partition')",
                  group.name, ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(group.tps)), exc)

    async def _give_up(self, group: PartitionGroup, exc: BaseException, *, counted: bool = False) -> None:
        """Another worker took the group (or the coordinator timed its transaction out): let it go."""
        log.warning("partition group %s: producer fenced or failed (%r); another worker may own the group now: "
                    "giving it up and asking the consumer group for a new assignment", group.name, exc)
        if not counted:  # an abort that failed was counted as an abort already
            self.aborted += 1
            TRANSACTIONS_ABORTED.labels(self._app, "fenced").inc()
        self.groups.pop(group.name, None)
        group.sent = {}
        for table in self.tables:
            table.discard_changes(group.number)
            table.close_partition(group.number)
        for sink in self.sinks:
            sink.discard(group.name)
        for tp in group.tps:
            state = self.partitions.pop(tp, None)
            if state is not None:
                state.active = False
        self.consumer.pause(*group.tps)
        group.dirty = False
        await self._close(group)
        self.consumer.rejoin()

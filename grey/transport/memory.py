"""An in-process broker that behaves like Kafka where grey depends on it.

It has topics with partitions and offsets, consumer groups that rebalance
(eagerly: everyone is revoked, then everyone is assigned) when members join
or leave, committed offsets, the default murmur2 partitioner, and producer
transactions with control markers, so ``read_committed`` readers never see
aborted or open transactional records. ``tests/integration`` runs the same
contract against a real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from grey.transport._murmur2 import partition_for_key
from grey.transport.base import (
    TP,
    AssignCallback,
    ClientSettings,
    Headers,
    Message,
    ProducerFencedError,
    RevokeCallback,
    TopicError,
    TopicSpec,
)


class _Txn:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = "open"  # open | committed | aborted


@dataclass(slots=True)
class MemoryMessage:
    """A record as stored and fetched; the same fields as aiokafka's ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    txn: _Txn | None = None
    control: bool = False


@dataclass(slots=True)
class _Metadata:
    topic: str
    partition: int
    offset: int


class _Log:
    """One partition's records; offsets are list indexes."""

    __slots__ = ("records",)

    def __init__(self) -> None:
        self.records: list[MemoryMessage] = []

    def last_stable_offset(self) -> int:
        for record in self.records:
            if record.txn is not None and record.txn.state == "open":
                return record.offset
        return len(self.records)


@dataclass
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    committed: dict[TP, int] = field(default_factory=dict)
    generation: int = 0
    rebalance: asyncio.Task[None] | None = None


class MemoryBroker:
    """The shared state behind every ``memory://NAME`` client in this process."""

    _registry: ClassVar[dict[str, MemoryBroker]] = {}

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.topics: dict[str, list[_Log]] = {}
        self.groups: dict[str, _Group] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._round_robin = itertools.count()
        self._epochs: dict[str, tuple[int, MemoryProducer]] = {}  # transactional id -> (epoch, owner)

    @classmethod
    def named(cls, name: str) -> MemoryBroker:
        """The broker for ``memory://name``, created on first use."""
        broker = cls._registry.get(name)
        if broker is None:
            broker = cls._registry[name] = cls(name)
        return broker

    @classmethod
    def forget(cls, name: str) -> None:
        """Drop a named broker and all its data."""
        cls._registry.pop(name, None)

    # -- topics ---------------------------------------------------------

    def create_topic(self, spec: TopicSpec) -> bool:
        if spec.partitions < 1:
            raise TopicError(f"topic {spec.name!r}: partitions must be >= 1, got {spec.partitions}")
        if spec.name in self.topics:
            return False
        self.topics[spec.name] = [_Log() for _ in range(spec.partitions)]
        return True

    def log(self, topic: str, partition: int) -> _Log:
        logs = self.topics.get(topic)
        if logs is None:
            raise TopicError(f"topic {topic!r} does not exist on memory://{self.name}; create it first")
        if not 0 <= partition < len(logs):
            raise TopicError(f"topic {topic!r} has {len(logs)} partitions; partition {partition} does not exist")
        return logs[partition]

    def append(
        self,
        topic: str,
        partition: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        timestamp_ms: int | None,
        txn: _Txn | None,
    ) -> MemoryMessage:
        logs = self.topics.get(topic)
        if logs is None:
            raise TopicError(f"topic {topic!r} does not exist on memory://{self.name}; create it first")
        if partition is None:
            partition = (next(self._round_robin) % len(logs) if key is None
                         else partition_for_key(key, len(logs)))
        log = self.log(topic, partition)
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        record = MemoryMessage(topic, partition, len(log.records), ts, key, value, tuple(headers), txn)
        log.records.append(record)
        self.wake()
        return record

    def end_transaction(self, txn: _Txn, commit: bool, touched: set[TP]) -> None:
        txn.state = "committed" if commit else "aborted"
        for tp in touched:  # a control marker takes an offset, as in Kafka
            log = self.log(tp.topic, tp.partition)
            log.records.append(
                MemoryMessage(tp.topic, tp.partition, len(log.records), int(time.time() * 1000),
                              None, None, (), txn, control=True)
            )
        self.wake()

    def init_transactions(self, producer: MemoryProducer) -> int:
        """Register a transactional producer; the previous one with the same id is fenced (as in Kafka)."""
        assert producer.transactional_id is not None
        epoch, previous = self._epochs.get(producer.transactional_id, (-1, None))
        if previous is not None and previous._txn is not None:
            txn, previous._txn = previous._txn, None  # its open transaction is aborted
            self.end_transaction(txn, False, previous._touched)
        self._epochs[producer.transactional_id] = (epoch + 1, producer)
        return epoch + 1

    def check_epoch(self, producer: MemoryProducer) -> None:
        assert producer.transactional_id is not None
        epoch, _ = self._epochs.get(producer.transactional_id, (-1, None))
        if producer.epoch != epoch:
            raise ProducerFencedError(
                f"transactional id {producer.transactional_id!r} was taken by a newer producer (epoch {epoch})"
            )

    # -- waiting for data ----------------------------------------------

    def wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait(self, seconds: float) -> None:
        """Return when a record is appended or ``seconds`` passed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await fut
        finally:
            self._waiters.discard(fut)

    # -- groups ----------------------------------------------------------

    def group(self, group_id: str) -> _Group:
        return self.groups.setdefault(group_id, _Group())

    def join(self, group_id: str, member: MemoryConsumer) -> None:
        group = self.group(group_id)
        group.members.append(member)
        self.schedule_rebalance(group)

    async def leave(self, group_id: str, member: MemoryConsumer) -> None:
        group = self.group(group_id)
        if member in group.members:
            group.members.remove(member)
            await member._revoke_all()
            await self.schedule_rebalance(group)

    def schedule_rebalance(self, group: _Group) -> asyncio.Task[None]:
        previous = group.rebalance

        async def run() -> None:
            if previous is not None and not previous.done():
                await asyncio.shield(previous)
            await self._rebalance(group)

        group.rebalance = asyncio.get_running_loop().create_task(run())
        return group.rebalance

    async def _rebalance(self, group: _Group) -> None:
        group.generation += 1
        members = list(group.members)
        for member in members:  # eager protocol: everybody gives everything up first
            await member._revoke_all()
        wanted = sorted({t for m in members for t in m.subscription})
        shares: dict[MemoryConsumer, set[TP]] = {m: set() for m in members}
        for topic in wanted:  # Kafka's range assignor: contiguous runs per topic, in member order
            if topic not in self.topics:
                continue
            count = len(self.topics[topic])
            candidates = [m for m in members if topic in m.subscription]
            each, extra = divmod(count, len(candidates))
            start = 0
            for i, member in enumerate(candidates):
                end = start + each + (1 if i < extra else 0)
                shares[member].update(TP(topic, p) for p in range(start, end))
                start = end
        for member in members:
            if member in group.members:  # it may have left while we awaited
                await member._assign(shares[member], group)


class MemoryConsumer:
    """A consumer-group member of a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker, settings: ClientSettings) -> None:
        self.broker = broker
        self.settings = settings
        self.subscription: set[str] = set()
        self._on_revoked: RevokeCallback | None = None
        self._on_assigned: AssignCallback | None = None
        self._assigned: set[TP] = set()
        self._positions: dict[TP, int] = {}
        self._paused: set[TP] = set()
        self._started = False
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._started = True
        if self.subscription:
            self.broker.join(self.settings.group_id, self)

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self.broker.leave(self.settings.group_id, self)

    def subscribe(
        self, topics: Iterable[str], on_revoked: RevokeCallback, on_assigned: AssignCallback
    ) -> None:
        self.subscription = set(topics)
        self._on_revoked, self._on_assigned = on_revoked, on_assigned
        if self._started:
            self.broker.join(self.settings.group_id, self)

    async def _revoke_all(self) -> None:
        self._ready.clear()
        revoked = set(self._assigned)
        if revoked and self._on_revoked is not None:
            await self._on_revoked(revoked)  # as in Kafka, the member may still commit them here
        self._assigned = set()
        self._positions.clear()

    async def _assign(self, tps: set[TP], group: _Group) -> None:
        self._assigned = set(tps)
        self._paused &= self._assigned
        for tp in tps:
            committed = group.committed.get(tp)
            if committed is None:
                log = self.broker.log(tp.topic, tp.partition)
                committed = 0 if self.settings.auto_offset_reset == "earliest" else len(log.records)
            self._positions[tp] = committed
        if self._on_assigned is not None:
            await self._on_assigned(set(tps))
        self._ready.set()

    def _fetch(self, max_records: int | None) -> dict[TP, list[Message]]:
        budget = max_records if max_records is not None else self.settings.max_poll_records
        committed_only = self.settings.isolation_level == "read_committed"
        out: dict[TP, list[Message]] = {}
        for tp in sorted(self._assigned - self._paused):
            if budget <= 0:
                break
            log = self.broker.log(tp.topic, tp.partition)
            end = log.last_stable_offset() if committed_only else len(log.records)
            pos = self._positions[tp]
            batch: list[Message] = []
            while pos < end and len(batch) < budget:
                record = log.records[pos]
                pos += 1
                if record.control:
                    continue
                if committed_only and record.txn is not None and record.txn.state == "aborted":
                    continue
                batch.append(record)
            self._positions[tp] = pos
            if batch:
                out[tp] = batch
                budget -= len(batch)
        return out

    async def getmany(self, timeout_ms: int, max_records: int | None = None) -> dict[TP, list[Message]]:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if self._ready.is_set():
                found = self._fetch(max_records)
                if found:
                    return found
            left = deadline - time.monotonic()
            if left <= 0:
                return {}
            await self.broker.wait(min(left, 0.05))

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        group = self.broker.group(self.settings.group_id)
        for tp, offset in offsets.items():
            if tp not in self._assigned:
                raise TopicError(f"cannot commit {tp}: not assigned to this member (a rebalance took it)")
            group.committed[TP(*tp)] = offset

    async def committed(self, tp: TP) -> int | None:
        return self.broker.group(self.settings.group_id).committed.get(TP(*tp))

    def assign(self, tps: Iterable[TP]) -> None:
        self._assigned = {TP(*tp) for tp in tps}
        for tp in self._assigned:
            self._positions.setdefault(tp, 0)
        self._ready.set()

    def assignment(self) -> set[TP]:
        return set(self._assigned)

    def rejoin(self) -> None:
        if self._started:
            self.broker.schedule_rebalance(self.broker.group(self.settings.group_id))

    def pause(self, *tps: TP) -> None:
        self._paused.update(TP(*tp) for tp in tps)

    def resume(self, *tps: TP) -> None:
        self._paused.difference_update(TP(*tp) for tp in tps)

    def seek(self, tp: TP, offset: int) -> None:
        self._positions[TP(*tp)] = offset

    async def position(self, tp: TP) -> int:
        return self._positions[TP(*tp)]

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        return {TP(*tp): len(self.broker.log(tp.topic, tp.partition).records) for tp in tps}

    async def beginning_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        return {TP(*tp): 0 for tp in tps}


class MemoryProducer:
    """Appends to a :class:`MemoryBroker`; transactional when given an id."""

    def __init__(self, broker: MemoryBroker, transactional_id: str | None = None) -> None:
        self.broker = broker
        self.transactional_id = transactional_id
        self._txn: _Txn | None = None
        self._touched: set[TP] = set()
        self._pending_offsets: list[tuple[str, dict[TP, int]]] = []
        self.epoch = -1

    async def start(self) -> None:
        if self.transactional_id is not None:
            self.epoch = self.broker.init_transactions(self)

    async def stop(self) -> None:
        if self._txn is not None:
            await self.abort_transaction()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> Awaitable[_Metadata]:
        if self.transactional_id is not None:
            self.broker.check_epoch(self)
            if self._txn is None:
                raise TopicError("transactional producer: call begin_transaction() before send()")
        record = self.broker.append(topic, partition, key, value, headers or (), timestamp_ms, self._txn)
        if self._txn is not None:
            self._touched.add(TP(record.topic, record.partition))
        done: asyncio.Future[_Metadata] = asyncio.get_running_loop().create_future()
        done.set_result(_Metadata(record.topic, record.partition, record.offset))
        return done

    async def send_many(
        self, topic: str, partition: int, records: Sequence[tuple[bytes | None, bytes | None]]
    ) -> Awaitable[int]:
        last = -1
        for key, value in records:
            last = (await (await self.send(topic, value, key=key, partition=partition))).offset
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        done.set_result(last)
        return done

    async def flush(self) -> None:
        return None

    async def partitions_for(self, topic: str) -> set[int]:
        logs = self.broker.topics.get(topic)
        if logs is None:
            raise TopicError(f"topic {topic!r} does not exist on memory://{self.broker.name}")
        return set(range(len(logs)))

    async def begin_transaction(self) -> None:
        if self.transactional_id is None:
            raise TopicError("begin_transaction() needs a producer created with a transactional_id")
        self.broker.check_epoch(self)
        if self._txn is not None:
            raise TopicError("a transaction is already open on this producer")
        self._txn, self._touched, self._pending_offsets = _Txn(), set(), []

    async def send_offsets_to_transaction(self, offsets: Mapping[TP, int], group_id: str) -> None:
        if self._txn is None:
            raise TopicError("send_offsets_to_transaction() outside a transaction")
        self._pending_offsets.append((group_id, {TP(*tp): o for tp, o in offsets.items()}))

    async def commit_transaction(self) -> None:
        self.broker.check_epoch(self)
        txn = self._end()
        self.broker.end_transaction(txn, True, self._touched)
        for group_id, offsets in self._pending_offsets:
            self.broker.group(group_id).committed.update(offsets)

    async def abort_transaction(self) -> None:
        txn = self._end()
        self.broker.end_transaction(txn, False, self._touched)

    def _end(self) -> _Txn:
        if self._txn is None:
            raise TopicError("no transaction is open on this producer")
        txn, self._txn = self._txn, None
        return txn


class MemoryAdmin:
    """Creates topics on a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        return [spec.name for spec in specs if self.broker.create_topic(spec)]

    async def list_topics(self) -> dict[str, int]:
        return {name: len(logs) for name, logs in self.broker.topics.items()}


class MemoryTransport:
    """``memory://NAME``: every client with the same NAME shares one broker."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.broker = MemoryBroker.named(url.removeprefix("memory://").strip("/"))

    def consumer(self, settings: ClientSettings) -> MemoryConsumer:
        return MemoryConsumer(self.broker, settings)

    def producer(self, settings: ClientSettings, transactional_id: str | None = None) -> MemoryProducer:
        return MemoryProducer(self.broker, transactional_id)

    def admin(self, settings: ClientSettings) -> MemoryAdmin:
        return MemoryAdmin(self.broker)

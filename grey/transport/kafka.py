"""``kafka://host:port[,host:port]``: the transport over aiokafka."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalOperation, InvalidProducerEpoch, KafkaConnectionError, ProducerFenced

from grey.transport._murmur2 import default_partitioner
from grey.transport.base import (
    TP,
    AssignCallback,
    BrokerConnectionError,
    ClientSettings,
    Headers,
    Message,
    ProducerFencedError,
    RecordMetadata,
    RevokeCallback,
    TopicError,
    TopicSpec,
)

log = logging.getLogger(__name__)

#: Kafka error codes that mean "fine" when creating a topic.
_TOPIC_ALREADY_EXISTS = 36


def bootstrap_servers(url: str) -> list[str]:
    """``kafka://a:9092,b:9092`` -> ``["a:9092", "b:9092"]``."""
    hosts = url.removeprefix("kafka://").strip("/")
    servers = [h.strip() for h in hosts.split(",") if h.strip()]
    if not servers:
        raise ValueError(f"broker URL {url!r} names no host; expected kafka://host:port[,host:port]")
    return servers


def _security(settings: ClientSettings) -> dict[str, Any]:
    opts: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.ssl_cafile)
        if settings.ssl_cafile is None:
            log.warning("TLS without ssl_cafile: using the system trust store")
        opts["ssl_context"] = context
    if settings.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        opts["sasl_mechanism"] = settings.sasl_mechanism or "SCRAM-SHA-512"
        opts["sasl_plain_username"] = settings.sasl_username
        opts["sasl_plain_password"] = settings.sasl_password
    return opts


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_revoked: RevokeCallback, on_assigned: AssignCallback) -> None:
        self._on_revoked, self._on_assigned = on_revoked, on_assigned

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._on_revoked({TP(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self._on_assigned({TP(tp.topic, tp.partition) for tp in assigned})


async def _connect(client: Any, servers: list[str], settings: ClientSettings) -> None:
    try:
        await client.start()
    except KafkaConnectionError as exc:
        raise BrokerConnectionError(
            f"cannot connect to {','.join(servers)} (security_protocol={settings.security_protocol}): {exc}. "
            "Check the address, that the listener speaks that protocol, and the credentials "
            "(an authentication failure is logged just above by aiokafka)"
        ) from exc


def _tp(tp: TP) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


class KafkaConsumer:
    """A group member over :class:`aiokafka.AIOKafkaConsumer`; grey commits."""

    def __init__(self, servers: list[str], settings: ClientSettings) -> None:
        self._client = AIOKafkaConsumer(
            bootstrap_servers=servers,
            client_id=settings.client_id,
            group_id=settings.group_id or None,  # no group: a reader that assign()s its partitions
            enable_auto_commit=False,
            # Range gives partition p of every topic with the same partition count to the same member:
            # that keeps a partition group (tables, transactions) on one worker.
            partition_assignment_strategy=(RangePartitionAssignor,),
            auto_offset_reset=settings.auto_offset_reset,
            max_poll_records=settings.max_poll_records,
            fetch_max_bytes=settings.fetch_max_bytes,
            max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            isolation_level=settings.isolation_level,
            request_timeout_ms=settings.request_timeout_ms,
            **_security(settings),
        )
        self._servers, self._settings = servers, settings

    async def start(self) -> None:
        await _connect(self._client, self._servers, self._settings)

    async def stop(self) -> None:
        await self._client.stop()

    def subscribe(
        self, topics: Iterable[str], on_revoked: RevokeCallback, on_assigned: AssignCallback
    ) -> None:
        self._client.subscribe(list(topics), listener=_Listener(on_revoked, on_assigned))

    async def getmany(self, timeout_ms: int, max_records: int | None = None) -> dict[TP, list[Message]]:
        # aiokafka's TopicPartition is a NamedTuple equal to TP, so no copy is made here.
        found: dict[TP, list[Message]] = await self._client.getmany(
            timeout_ms=timeout_ms, max_records=max_records
        )
        return found

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        await self._client.commit({_tp(tp): offset for tp, offset in offsets.items()})

    async def committed(self, tp: TP) -> int | None:
        offset: int | None = await self._client.committed(_tp(tp))
        return offset

    def assign(self, tps: Iterable[TP]) -> None:
        self._client.assign([_tp(tp) for tp in tps])

    def assignment(self) -> set[TP]:
        return {TP(tp.topic, tp.partition) for tp in self._client.assignment()}

    def rejoin(self) -> None:
        coordinator = getattr(self._client, "_coordinator", None)
        if coordinator is not None:
            coordinator.request_rejoin()

    def pause(self, *tps: TP) -> None:
        self._client.pause(*(_tp(tp) for tp in tps))

    def resume(self, *tps: TP) -> None:
        self._client.resume(*(_tp(tp) for tp in tps))

    def seek(self, tp: TP, offset: int) -> None:
        self._client.seek(_tp(tp), offset)

    async def position(self, tp: TP) -> int:
        pos: int = await self._client.position(_tp(tp))
        return pos

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        found = await self._client.end_offsets([_tp(tp) for tp in tps])
        return {TP(tp.topic, tp.partition): o for tp, o in found.items()}

    async def beginning_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        found = await self._client.beginning_offsets([_tp(tp) for tp in tps])
        return {TP(tp.topic, tp.partition): o for tp, o in found.items()}


class KafkaProducer:
    """:class:`aiokafka.AIOKafkaProducer` with the case study's settings."""

    def __init__(self, servers: list[str], settings: ClientSettings, transactional_id: str | None) -> None:
        self._client = AIOKafkaProducer(
            bootstrap_servers=servers,
            client_id=settings.client_id,
            acks="all" if settings.acks in ("all", "-1") else int(settings.acks),
            enable_idempotence=settings.enable_idempotence or transactional_id is not None,
            transactional_id=transactional_id,
            transaction_timeout_ms=settings.transaction_timeout_ms,
            linger_ms=settings.linger_ms,
            max_batch_size=settings.batch_size,
            compression_type=settings.compression_type,
            request_timeout_ms=settings.request_timeout_ms,
            partitioner=default_partitioner,
            **_security(settings),
        )
        self._servers, self._settings = servers, settings
        self._transactional = transactional_id is not None

    async def start(self) -> None:
        with _fencing(self._client):
            await _connect(self._client, self._servers, self._settings)

    async def stop(self) -> None:
        await self._client.stop()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> Awaitable[RecordMetadata]:
        try:  # per record: a plain try costs nothing until it raises, unlike entering _fencing
            fut: asyncio.Future[RecordMetadata] = await self._client.send(
                topic, value, key=key, partition=partition,
                headers=list(headers) if headers else None, timestamp_ms=timestamp_ms,
            )
        except _FENCE_SIGNS as exc:
            _raise_as_fenced(self._client, exc)
        if self._transactional:  # a failure also fails the commit; nobody needs to await this one
            fut.add_done_callback(_retrieve)
        return fut

    async def send_many(
        self, topic: str, partition: int, records: Sequence[tuple[bytes | None, bytes | None]]
    ) -> Awaitable[int]:
        with _fencing(self._client):
            deliveries: list[tuple[Awaitable[RecordMetadata], int]] = []
            batch, count = self._client.create_batch(), 0
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    deliveries.append((await self._client.send_batch(batch, topic, partition=partition), count))
                    batch, count = self._client.create_batch(), 0
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise TopicError(f"a record for {topic}[{partition}] is larger than batch_size allows")
                count += 1
            if count:
                deliveries.append((await self._client.send_batch(batch, topic, partition=partition), count))
        last = asyncio.ensure_future(_last_offset(deliveries))
        last.add_done_callback(_retrieve)  # a checkpoint that failed earlier never awaits it
        return last

    async def flush(self) -> None:
        with _fencing(self._client):
            await self._client.flush()

    async def partitions_for(self, topic: str) -> set[int]:
        found: set[int] = await self._client.partitions_for(topic)
        return found

    async def begin_transaction(self) -> None:
        with _fencing(self._client):
            await self._client.begin_transaction()

    async def send_offsets_to_transaction(self, offsets: Mapping[TP, int], group_id: str) -> None:
        with _fencing(self._client):
            await self._client.send_offsets_to_transaction(
                {_tp(tp): o for tp, o in offsets.items()}, group_id
            )

    async def commit_transaction(self) -> None:
        with _fencing(self._client):
            await self._client.commit_transaction()

    async def abort_transaction(self) -> None:
        with _fencing(self._client):
            await self._client.abort_transaction()


_FENCE_SIGNS = (ProducerFenced, InvalidProducerEpoch, IllegalOperation, AssertionError)


def _raise_as_fenced(client: AIOKafkaProducer | None, exc: BaseException) -> NoReturn:
    """Raise one of _FENCE_SIGNS as grey's ProducerFencedError when it means fenced, else as it is.

    A fence noticed by aiokafka's background sender leaves the producer in a
    fatal state, and the next call fails with an unrelated-looking error; that
    counts as fenced too.
    """
    if isinstance(exc, ProducerFenced | InvalidProducerEpoch):
        raise ProducerFencedError(f"{type(exc).__name__}: {exc}") from exc
    txn = getattr(client, "_txn_manager", None)
    if txn is not None and txn.is_fatal_error():
        raise ProducerFencedError(f"the transactional producer failed for good ({exc}); it was fenced by "
                                  "a newer producer, or the coordinator timed its transaction out") from exc
    raise exc


@contextlib.contextmanager
def _fencing(client: AIOKafkaProducer | None = None) -> Iterator[None]:
    """aiokafka's fencing errors (a newer epoch, or a transaction the coordinator timed out) as one type."""
    try:
        yield
    except _FENCE_SIGNS as exc:
        _raise_as_fenced(client, exc)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a delivery's failure as seen (it surfaces where it matters: the flush or the commit)."""
    if not fut.cancelled():
        fut.exception()


async def _last_offset(deliveries: list[tuple[Awaitable[RecordMetadata], int]]) -> int:
    """A batch resolves to its base offset; the last record is count - 1 further (idempotent producer)."""
    last = -1
    for delivery, count in deliveries:
        last = (await delivery).offset + count - 1
    return last


class KafkaAdmin:
    """Topic creation that checks every per-topic error code in the response."""

    def __init__(self, servers: list[str], settings: ClientSettings) -> None:
        self._servers = servers
        self._client = AIOKafkaAdminClient(
            bootstrap_servers=servers, client_id=settings.client_id,
            request_timeout_ms=settings.request_timeout_ms, **_security(settings),
        )
        self._settings = settings

    async def start(self) -> None:
        await _connect(self._client, self._servers, self._settings)

    async def stop(self) -> None:
        await self._client.close()

    async def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        if not specs:
            return []
        new = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replicas,
                     topic_configs=dict(s.config))
            for s in specs
        ]
        response = await self._client.create_topics(new)
        created: list[str] = []
        problems: list[str] = []
        for entry in response.topic_errors:  # (name, code) or (name, code, message)
            name, code = entry[0], entry[1]
            message = entry[2] if len(entry) > 2 else None
            if code == 0:
                created.append(name)
            elif code != _TOPIC_ALREADY_EXISTS:
                problems.append(f"{name}: Kafka error {code} {message or ''}".rstrip())
        if problems:
            raise TopicError(
                "could not create topics on " + ",".join(self._servers) + ": " + "; ".join(problems)
                + " (check partitions/replicas against the broker count and the topic config names)"
            )
        if created:
            await self._wait_for_leaders(created)
        return created

    async def _wait_for_leaders(self, names: list[str], seconds: float = 15.0) -> None:
        """New partitions have no leader for a moment; producing then only earns retries and warnings."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            described = await self._client.describe_topics(names)
            waiting = [
                t["topic"] for t in described
                if t["error_code"] != 0 or not t["partitions"] or any(p["leader"] < 0 for p in t["partitions"])
            ]
            if not waiting:
                return
            if loop.time() > deadline:
                log.warning("topics %s still have partitions without a leader after %.0fs", waiting, seconds)
                return
            await asyncio.sleep(0.1)

    async def list_topics(self) -> dict[str, int]:
        described = await self._client.describe_topics()
        return {t["topic"]: len(t["partitions"]) for t in described if not t["topic"].startswith("__")}


class KafkaTransport:
    """Clients for one Kafka cluster."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.servers = bootstrap_servers(url)

    def consumer(self, settings: ClientSettings) -> KafkaConsumer:
        return KafkaConsumer(self.servers, settings)

    def producer(self, settings: ClientSettings, transactional_id: str | None = None) -> KafkaProducer:
        return KafkaProducer(self.servers, settings, transactional_id)

    def admin(self, settings: ClientSettings) -> KafkaAdmin:
        return KafkaAdmin(self.servers, settings)

"""Byte-level transport protocols: what grey needs from a Kafka-like broker.

Two implementations live beside this module: ``kafka`` (aiokafka, a real
broker) and ``memory`` (an in-process broker for unit tests and quick starts).
Everything above this boundary moves decoded values; everything below moves
bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

Headers = Sequence[tuple[str, bytes]]


class TP(NamedTuple):
    """A topic partition. Equal to (and hashes like) aiokafka's TopicPartition."""

    topic: str
    partition: int


class Message(Protocol):
    """One fetched record. aiokafka's ConsumerRecord satisfies this as it is."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers: ...


class RecordMetadata(Protocol):
    """Where a produced record landed."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """What a topic should look like when grey creates it."""

    name: str
    partitions: int = 1
    replicas: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


class TopicError(Exception):
    """A topic could not be created or described; the message names it."""


class BrokerConnectionError(ConnectionError):
    """The broker could not be reached or refused us; the message says what to check."""


class ProducerFencedError(Exception):
    """A newer producer took this transactional id: another worker owns the partition group now."""


RevokeCallback = Callable[[set[TP]], Awaitable[None]]
AssignCallback = Callable[[set[TP]], Awaitable[None]]


class Consumer(Protocol):
    """A group member reading partitions. grey commits; nothing auto-commits."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def subscribe(
        self, topics: Iterable[str], on_revoked: RevokeCallback, on_assigned: AssignCallback
    ) -> None: ...
    async def getmany(self, timeout_ms: int, max_records: int | None) -> dict[TP, list[Message]]: ...
    async def commit(self, offsets: Mapping[TP, int]) -> None: ...
    async def committed(self, tp: TP) -> int | None: ...
    def assign(self, tps: Iterable[TP]) -> None:
        """Read these partitions directly, outside any group (for changelog recovery)."""
        ...
    def assignment(self) -> set[TP]: ...
    def rejoin(self) -> None:
        """Ask the group for a new assignment (after giving partitions up without a rebalance)."""
        ...
    def pause(self, *tps: TP) -> None: ...
    def resume(self, *tps: TP) -> None: ...
    def seek(self, tp: TP, offset: int) -> None: ...
    async def position(self, tp: TP) -> int: ...
    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]: ...
    async def beginning_offsets(self, tps: Iterable[TP]) -> dict[TP, int]: ...


class Producer(Protocol):
    """Sends records; with a transactional id also runs transactions."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> Awaitable[RecordMetadata]: ...
    async def send_many(
        self, topic: str, partition: int, records: Sequence[tuple[bytes | None, bytes | None]]
    ) -> Awaitable[int]:
        """Send (key, value) records to one partition in as few batches as fit; the awaitable gives
        the offset of the last record once the broker has them all."""
        ...
    async def flush(self) -> None: ...
    async def partitions_for(self, topic: str) -> set[int]: ...
    async def begin_transaction(self) -> None: ...
    async def send_offsets_to_transaction(self, offsets: Mapping[TP, int], group_id: str) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...


class Admin(Protocol):
    """Creates and describes topics."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]: ...
    async def list_topics(self) -> dict[str, int]: ...


@dataclass(slots=True)
class ClientSettings:
    """The consumer/producer knobs both transports understand."""

    group_id: str
    client_id: str = "grey"
    auto_offset_reset: str = "earliest"
    max_poll_records: int = 500
    fetch_max_bytes: int = 52_428_800
    max_partition_fetch_bytes: int = 1_048_576
    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    isolation_level: str = "read_uncommitted"
    acks: str = "all"
    enable_idempotence: bool = True
    linger_ms: int = 5
    batch_size: int = 524_288  # per partition batch: 16 KiB capped a producer near 40k records/s of 500 B
    compression_type: str | None = "lz4"
    request_timeout_ms: int = 40_000
    transaction_timeout_ms: int = 60_000
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None


class Transport(Protocol):
    """A factory for one broker's clients."""

    url: str

    def consumer(self, settings: ClientSettings) -> Consumer: ...
    def producer(self, settings: ClientSettings, transactional_id: str | None = None) -> Producer: ...
    def admin(self, settings: ClientSettings) -> Admin: ...

"""Topics: a name, a shape for the broker, and codecs for keys and values."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from grey.codecs import Codec, codec_for
from grey.config import Settings
from grey.transport._murmur2 import partition_for_key
from grey.transport.base import Producer, RecordMetadata, TopicSpec


class TopicOwner(Protocol):
    """What a topic needs of its app: defaults for its shape, and a producer while running."""

    @property
    def conf(self) -> Settings: ...

    @property
    def producer(self) -> Producer: ...

HeadersIn = Mapping[str, str | bytes] | Sequence[tuple[str, str | bytes]] | None

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or a string like ``"7d"``, ``"30m"``, ``"500ms"``."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"duration {value!r}: expected seconds or a number with ms, s, m, h, d or w")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


async def _wait_all(deliveries: list[Awaitable[int]]) -> None:
    for delivery in deliveries:
        await delivery


def _all_delivered(deliveries: list[Awaitable[int]]) -> Awaitable[None]:
    # Like send's future: a failure nobody awaits is still reported by asyncio when it is dropped.
    return asyncio.ensure_future(_wait_all(deliveries))


def encode_headers(headers: HeadersIn) -> list[tuple[str, bytes]] | None:
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(k, v.encode() if isinstance(v, str) else bytes(v)) for k, v in items]


class Topic:
    """A Kafka topic as the app declares it; ``await topic.send(value, key=...)`` produces to it."""

    def __init__(
        self,
        app: TopicOwner,
        name: str,
        *,
        key_type: Any = None,
        value_type: Any = None,
        partitions: int | None = None,
        replicas: int | None = None,
        retention: float | str | None = None,
        compacted: bool = False,
        key_serializer: str | Codec | None = None,
        value_serializer: str | Codec | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        if not name or not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", name):
            raise ValueError(f"topic name {name!r}: use 1-249 letters, digits, '.', '_' or '-'")
        self.app = app
        self.name = name
        self.key_type = key_type
        self.value_type = value_type
        self.partitions = partitions
        self.replicas = replicas
        self.retention = None if retention is None else parse_duration(retention)
        self.compacted = compacted
        self.extra_config = dict(config or {})
        self.key_codec = codec_for(str if key_type is None and key_serializer is None else key_type,
                                   key_serializer)
        self.value_codec = codec_for(value_type, value_serializer)

    def __repr__(self) -> str:
        return f"<Topic {self.name}>"

    def spec(self) -> TopicSpec:
        """What the admin client creates when the topic is missing."""
        config = dict(self.extra_config)
        if self.retention is not None:
            config["retention.ms"] = str(int(self.retention * 1000))
        if self.compacted:
            config["cleanup.policy"] = "compact"
        return TopicSpec(
            self.name,
            partitions=self.partitions or self.app.conf.topic_partitions,
            replicas=self.replicas or self.app.conf.topic_replicas,
            config=config,
        )

    def decode_key(self, data: bytes | None) -> Any:
        return None if data is None else self.key_codec.loads(data)

    async def send(
        self,
        value: Any = None,
        *,
        key: Any = None,
        headers: HeadersIn = None,
        partition: int | None = None,
        timestamp: float | None = None,
    ) -> Awaitable[RecordMetadata]:
        """Queue a record; returns an awaitable that resolves when the broker has it."""
        producer = self.app.producer
        return await producer.send(
            self.name,
            None if value is None else self.value_codec.dumps(value),
            key=None if key is None else self.key_codec.dumps(key),
            partition=partition,
            headers=encode_headers(headers),
            timestamp_ms=None if timestamp is None else int(timestamp * 1000),
        )

    async def send_many(self, records: Iterable[tuple[Any, Any]]) -> Awaitable[None]:
        """Queue many ``(key, value)`` records at once; the awaitable resolves when the broker has them all.

        The records are placed as ``send`` places them (Kafka's murmur2 of the key; the records
        without a key all go to one partition chosen at random), kept in order per partition, and
        packed straight into the producer's batches: no future per record. Under exactly-once they
        join the transaction of the event in hand, like ``send``. For a per-record partition,
        headers or timestamp, use ``send``.
        """
        producer = self.app.producer
        numbers = sorted(await producer.partitions_for(self.name))
        dump_key, dump_value = self.key_codec.dumps, self.value_codec.dumps
        by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        keyless: int | None = None
        for key, value in records:
            raw_key = None if key is None else dump_key(key)
            if raw_key is not None:
                number = numbers[partition_for_key(raw_key, len(numbers))]
            else:
                number = keyless if keyless is not None else (keyless := random.choice(numbers))
            by_partition.setdefault(number, []).append((raw_key, None if value is None else dump_value(value)))
        deliveries = [await producer.send_many(self.name, n, batch) for n, batch in by_partition.items()]
        return _all_delivered(deliveries)

    async def send_and_wait(self, value: Any = None, **kwargs: Any) -> RecordMetadata:
        """Send and wait until the broker acknowledged the record."""
        return await (await self.send(value, **kwargs))

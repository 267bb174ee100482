"""The Redis sink against a real Redis: data and marker apply together, and never twice."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

import grey
from grey.sinks.redis import RedisSink
from grey.sinks.staged import SinkMarker


class Total(grey.Record):
    user_id: str
    total: float


async def test_batches_apply_once_in_marker_order(redis_url: str, unique: str) -> None:
    sink = RedisSink(redis_url, key_pattern=f"{unique}:realtime:{{user_id}}", expire=60,
                     marker_prefix=f"{unique}:marker:")
    client = aioredis.from_url(redis_url)
    await sink.start()
    try:
        sink.stage("g0", Total(user_id="ann", total=5.0))
        sink.stage("g0", Total(user_id="bob", total=1.0))
        sink.stage("g0", Total(user_id="ann", total=7.0))  # latest value per key wins inside a batch
        assert await sink.flush(SinkMarker("g0", 100)) is True
        assert await client.get(f"{unique}:realtime:ann") == b'{"user_id":"ann","total":7.0}'
        assert 0 < await client.ttl(f"{unique}:realtime:ann") <= 60
        assert await sink.marker("g0") == 100

        # a replay of the same batch after a crash, or an older one, does not apply
        sink.stage("g0", Total(user_id="ann", total=999.0))
        assert await sink.flush(SinkMarker("g0", 100)) is False
        sink.stage("g0", Total(user_id="ann", total=998.0))
        assert await sink.flush(SinkMarker("g0", 90)) is False
        assert await client.get(f"{unique}:realtime:ann") == b'{"user_id":"ann","total":7.0}'

        # a newer batch applies; another group has its own marker
        sink.stage("g0", Total(user_id="ann", total=8.0))
        assert await sink.flush(SinkMarker("g0", 150)) is True
        sink.stage("g1", Total(user_id="cy", total=2.0))
        assert await sink.flush(SinkMarker("g1", 3)) is True
        assert await client.get(f"{unique}:realtime:ann") == b'{"user_id":"ann","total":8.0}'
        assert (await sink.marker("g0"), await sink.marker("g1")) == (150, 3)

        sink.stage("g0", Total(user_id="dee", total=1.0))
        sink.discard("g0")  # an aborted checkpoint's staged records go away
        assert await sink.flush(SinkMarker("g0", 200)) is True
        assert await client.get(f"{unique}:realtime:dee") is None
    finally:
        await sink.stop()
        await client.aclose()


def test_key_pattern_errors_name_the_field() -> None:
    sink = RedisSink(key_pattern="realtime:{user_id}")
    with pytest.raises(KeyError, match="needs field 'user_id'"):
        sink.stage("g0", {"account": "x"})
    with pytest.raises(ValueError, match="names no field"):
        RedisSink(key_pattern="realtime")

"""Exactly-once on the real broker and Redis, in one process: an aborted batch, a timed-out transaction."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import grey
from grey.chaos.eos import read_topic
from grey.sinks.redis import RedisSink
from tests.unit.runtime.test_exactly_once import poison_mid_batch
from tests.waiting import wait_for


async def test_a_timed_out_transaction_is_given_up_and_redone_once(
    kafka_url: str, unique: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = grey.App(unique, broker=kafka_url, processing_guarantee="exactly_once", data_dir=str(tmp_path),
                   commit_interval=0.5, transaction_timeout_ms=2000, session_timeout_ms=6000,
                   heartbeat_interval_ms=1000)
    source = app.topic(f"{unique}-in", value_type=dict, partitions=2)
    out = app.topic(f"{unique}-out", value_type=dict, partitions=2)
    stalled: list[int] = []

    @app.agent(source)
    async def forward(stream: grey.Stream) -> None:
        async for event in stream:
            await out.send(event, key=str(event["id"]))
            if event["id"] == 50 and not stalled:  # hold the open transaction past its timeout, once
                stalled.append(event["id"])
                await asyncio.sleep(15)

    caplog.set_level(logging.WARNING, logger="grey")
    async with app.running() as runtime:
        for i in range(200):
            await source.send({"id": i}, key=str(i % 2))
        await wait_for(lambda: runtime.processed >= 200 and runtime.transactions is not None
                       and runtime.transactions.aborted > 0, 90)
        await wait_for(lambda: len(runtime.partitions) == 2 and not runtime.recovering, 60)
        await asyncio.sleep(1.5)  # a checkpoint after the redo
    outputs: list[dict[str, Any]] = [json.loads(v or b"null") for _, v in await read_topic(kafka_url, out.name, 2)]
    assert sorted(o["id"] for o in outputs) == list(range(200)), "each event once, the stalled ones included"
    assert "fenced or failed" in caplog.text


@pytest.mark.parametrize("send_many", [False, True], ids=["send", "send_many"])
async def test_an_agent_error_mid_batch_leaves_no_trace_in_kafka_the_table_or_redis(
    kafka_url: str, redis_url: str, unique: str, tmp_path: Path, send_many: bool
) -> None:
    sink = RedisSink(redis_url, key_pattern=f"{unique}:total:{{user}}", expire=600)

    async def in_redis() -> dict[str, int]:
        client = aioredis.from_url(redis_url)
        try:
            keys = [key async for key in client.scan_iter(f"{unique}:total:*")]
            values = await client.mget(keys) if keys else []
        finally:
            await client.aclose()
        return {json.loads(v)["user"]: json.loads(v)["total"] for v in values}

    await poison_mid_batch(kafka_url, unique, tmp_path, sink, in_redis, send_many=send_many)

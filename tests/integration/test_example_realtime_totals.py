"""examples/realtime_totals.py on the real Kafka and Redis: exact totals in the table, the topic and Redis."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from grey.chaos.eos import read_topic
from tests.unit.test_examples import load


async def test_realtime_totals_are_exact_everywhere(kafka_url: str, redis_url: str, unique: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REDIS_URL", redis_url)
    example = load("realtime_totals")
    example.app.conf.id = example.app.conf.client.group_id = unique  # fresh group, changelog and markers
    for topic in (example.clicks, example.enriched):
        topic.name = f"{unique}-{topic.name}"
    example.app.topics = {t.name: t for t in example.app.topics.values()}
    example.app.tables[0].changelog.name = f"{unique}-user-totals-changelog"
    example.realtime.key_pattern = f"{unique}:realtime:{{user_id}}"
    expected: dict[str, float] = {}
    async with example.app.running(broker=kafka_url) as runtime:
        for i in range(600):
            user = f"u{i % 7}"
            amount = (i % 9) * 0.25
            expected[user] = expected.get(user, 0.0) + amount
            await example.clicks.send(example.Click(user_id=user, event_type="click", amount=amount), key=user)
        for _ in range(300):
            if runtime.processed >= 600:
                break
            await asyncio.sleep(0.1)
    out = [json.loads(value or b"null") for _, value in await read_topic(kafka_url, example.enriched.name, 8)]
    assert len(out) == 600  # read_committed: each click once
    finals = {user: max(r["total"] for r in out if r["user_id"] == user) for user in expected}
    assert finals == expected
    client = aioredis.from_url(redis_url)
    stored = {user: json.loads(await client.get(f"{unique}:realtime:{user}"))["total"] for user in expected}
    await client.aclose()
    assert stored == expected

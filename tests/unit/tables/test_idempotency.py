"""Idempotency keys: check, mark, recover with the table, expire after retention."""

from __future__ import annotations

import time
from pathlib import Path

import grey
from grey.tables import IdempotencyKeys, idempotency_key
from tests.waiting import wait_for


def build(unique: str, data_dir: Path, applied: list[int]) -> tuple[grey.App, grey.Topic, IdempotencyKeys]:
    app = grey.App(unique, broker=f"memory://{unique}", data_dir=str(data_dir), commit_interval=0.1)
    topic = app.topic("orders", key_type=str, value_type=int, partitions=2)
    keys = IdempotencyKeys(app.Table("idempotency", key_type=str, value_type=float), retention=3600)

    @app.agent(topic, name="apply")
    async def apply(stream: grey.Stream) -> None:
        async for value in stream.events():
            key = keys.key_for(value, "charge")
            if not keys.seen(key):
                applied.append(value.value)
                keys.mark(key)

    return app, topic, keys


def test_key_format_is_the_case_studys() -> None:
    assert idempotency_key("orders", 3, 1200, "s3-sink") == "orders-3-1200-s3-sink"


async def test_replayed_events_are_recognised_after_a_restart(unique: str, tmp_path: Path) -> None:
    applied: list[int] = []
    app, topic, keys = build(unique, tmp_path, applied)
    async with app.running() as runtime:
        for i in range(20):
            await topic.send(i, key=f"c{i % 3}")
        await wait_for(lambda: runtime.processed == 20)
        assert len(list(keys.table.items())) == 20
    assert sorted(applied) == list(range(20))

    # a second app reads the same topic again from the start (a replay), with the keys recovered
    again, _, keys2 = build(unique, tmp_path / "fresh", applied)
    again.conf.client.group_id = f"{unique}-replay"
    async with again.running() as runtime:
        await wait_for(lambda: runtime.processed == 20)
        assert len(list(keys2.table.items())) == 20  # recovered from the changelog, none added
    assert sorted(applied) == list(range(20))  # nothing applied twice


async def test_keys_expire_after_retention(unique: str, tmp_path: Path) -> None:
    applied: list[int] = []
    app, topic, keys = build(unique, tmp_path, applied)
    async with app.running() as runtime:
        await topic.send(1, key="a")
        await wait_for(lambda: runtime.processed == 1)
        assert keys.expire() == 0
        assert keys.expire(now=time.time() + 3601) == 1
        assert keys.expired == 1
        assert list(keys.table.items()) == []

"""Tables on the memory broker: read-your-writes, checkpoints to changelog and store, recovery."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from pathlib import Path

import pytest

import grey
from grey.config import ConfigError
from grey.tables import Table
from grey.transport.memory import MemoryBroker
from tests.waiting import wait_for


def counting_app(unique: str, data_dir: Path, store: str = "rocksdb://") -> tuple[grey.App, grey.Topic, Table]:
    app = grey.App(unique, broker=f"memory://{unique}", data_dir=str(data_dir), checkpoint_interval=50)
    words = app.topic("words", key_type=str, value_type=str, partitions=4)
    counts = app.Table("counts", default=int, key_type=str, value_type=int, store=store)
    app.Table("unused", store=store)  # a second table takes the topic's partition count too

    @app.agent(words, name="count")
    async def count(stream: grey.Stream) -> None:
        async for word in stream:
            counts[word] += 1
            assert counts[word] >= 1  # read-your-writes before any checkpoint

    return app, words, counts


async def produce_words(app: grey.App, words: grey.Topic, n: int) -> Counter[str]:
    expected: Counter[str] = Counter()
    for i in range(n):
        word = f"w{i % 37}"
        await words.send(word, key=word)
        expected[word] += 1
    return expected


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
async def test_counts_survive_a_restart(unique: str, tmp_path: Path, store: str) -> None:
    app, words, counts = counting_app(unique, tmp_path, store)
    async with app.running() as runtime:
        expected = await produce_words(app, words, 500)
        await wait_for(lambda: runtime.processed == 500)
        assert counts.as_dict() == dict(expected)
    changelog = MemoryBroker.named(unique).topics[f"{unique}-counts-changelog"]
    assert sum(len(log.records) for log in changelog) <= 500  # latest value per key per checkpoint

    again, words2, counts2 = counting_app(unique, tmp_path, store)
    async with again.running() as runtime:
        await wait_for(lambda: len(runtime.partitions) == 4 and not runtime.recovering)
        assert counts2.as_dict() == dict(expected)
        more = await produce_words(again, words2, 100)
        await wait_for(lambda: runtime.processed == 100)
        assert counts2.as_dict() == dict(expected + more)


async def test_deleted_store_is_rebuilt_from_the_changelog(unique: str, tmp_path: Path) -> None:
    app, words, _ = counting_app(unique, tmp_path)
    async with app.running() as runtime:
        expected = await produce_words(app, words, 300)
        await wait_for(lambda: runtime.processed == 300)
    shutil.rmtree(tmp_path / unique)
    again, _, counts2 = counting_app(unique, tmp_path)
    async with again.running() as runtime:
        await wait_for(lambda: len(runtime.partitions) == 4 and not runtime.recovering)
        assert counts2.as_dict() == dict(expected)


async def test_partition_moves_with_its_state(unique: str, tmp_path: Path) -> None:
    a, words, counts_a = counting_app(unique, tmp_path / "a")
    b, _, counts_b = counting_app(unique, tmp_path / "b")
    async with a.running() as ra:
        expected = await produce_words(a, words, 400)
        await wait_for(lambda: ra.processed == 400)
        async with b.running() as rb:
            await wait_for(lambda: len(ra.partitions) == 2 and len(rb.partitions) == 2 and not rb.recovering)
            merged = {**counts_a.as_dict(), **counts_b.as_dict()}
            assert merged == dict(expected)
            assert counts_b.as_dict()  # b rebuilt its half from the changelog
        await wait_for(lambda: len(ra.partitions) == 4 and not ra.recovering)
        assert counts_a.as_dict() == dict(expected)


async def test_table_must_be_copartitioned(unique: str, tmp_path: Path) -> None:
    app = grey.App(unique, broker=f"memory://{unique}", data_dir=str(tmp_path))
    topic = app.topic("in", partitions=4)
    app.Table("t", partitions=8)

    @app.agent(topic)
    async def use(stream: grey.Stream) -> None:
        async for _ in stream:
            pass

    with pytest.raises(ConfigError, match=r"table 't' has 8 partitions but .* has 4"):
        async with app.running():
            pass


async def test_table_outside_an_owned_partition_says_why(unique: str, tmp_path: Path) -> None:
    app = grey.App(unique, broker=f"memory://{unique}", data_dir=str(tmp_path))
    table = app.Table("t", partitions=4)
    with pytest.raises(KeyError, match="not owned by this worker"):
        table["x"] = 1


async def test_a_partition_revoked_mid_event_is_not_an_agent_failure(unique: str, tmp_path: Path) -> None:
    gate = asyncio.Event()
    holding = asyncio.Event()

    def build(data_dir: Path) -> tuple[grey.App, grey.Topic, Table]:
        app = grey.App(unique, broker=f"memory://{unique}", data_dir=str(data_dir))
        topic = app.topic("words", key_type=str, value_type=str, partitions=2)
        counts = app.Table("counts", default=int, key_type=str, value_type=int)

        @app.agent(topic, name="count")
        async def count(stream: grey.Stream) -> None:
            async for word in stream:
                if word == "slow":
                    holding.set()
                    await gate.wait()  # a rebalance happens meanwhile
                counts[word] += 1

        return app, topic, counts

    a, topic, _ = build(tmp_path / "a")
    b, _, counts_b = build(tmp_path / "b")
    async with a.running() as ra:
        await wait_for(lambda: len(ra.partitions) == 2)
        await topic.send("slow", key="slow", partition=1)  # the memory broker gives partition 1 to b
        await asyncio.wait_for(holding.wait(), 5)
        async with b.running() as rb:
            await wait_for(lambda: len(ra.partitions) == 1 and len(rb.partitions) == 1 and not rb.recovering)
            gate.set()
            await asyncio.sleep(0.1)
            assert ra.failures == []  # the write to a partition it no longer owns is not an error
            await wait_for(lambda: counts_b.as_dict() == {"slow": 1})  # the new owner redid the event
            assert rb.failures == []

"""Commit semantics of the runtime on the memory broker: what is committed, and when."""

from __future__ import annotations

import asyncio

import grey
from grey.transport import TP
from grey.transport.memory import MemoryBroker
from tests.waiting import wait_for


def committed(unique: str, group: str, tp: TP) -> int | None:
    return MemoryBroker.named(unique).group(group).committed.get(tp)


async def test_at_least_once_commits_processed_events_every_checkpoint(unique: str) -> None:
    app = grey.App(unique, broker=f"memory://{unique}", checkpoint_interval=10, commit_interval=60)
    topic = app.topic("in", value_type=int, partitions=1)
    gate = asyncio.Event()
    processed: list[int] = []

    @app.agent(topic)
    async def slow(stream: grey.Stream) -> None:
        async for value in stream:
            if value == 25:
                await gate.wait()  # hold event 25 in hand
            processed.append(value)

    async with app.running():
        for i in range(40):
            await topic.send(i)
        await wait_for(lambda: len(processed) == 25)
        await asyncio.sleep(0.05)
        offset = committed(unique, unique, TP("in", 0))
        assert offset is not None and offset <= 25  # never past the event in hand
        assert offset >= 10  # but the checkpoint did commit finished work
        gate.set()
        await wait_for(lambda: len(processed) == 40)
    assert committed(unique, unique, TP("in", 0)) == 40  # stop commits everything processed


async def test_at_most_once_commits_before_processing(unique: str) -> None:
    app = grey.App(unique, broker=f"memory://{unique}", processing_guarantee="at_most_once",
                   shutdown_timeout=0.5)  # the stuck agent is cancelled on stop
    topic = app.topic("in", value_type=int, partitions=1)
    started = asyncio.Event()

    @app.agent(topic)
    async def stuck(stream: grey.Stream) -> None:
        async for _ in stream:
            started.set()
            await asyncio.sleep(3600)

    async with app.running():
        for i in range(5):
            await topic.send(i)
        await asyncio.wait_for(started.wait(), 5)
        assert committed(unique, unique, TP("in", 0)) == 5


async def test_malformed_json_goes_to_dead_letters_and_processing_goes_on(unique: str) -> None:
    class Click(grey.Record):
        user_id: str

    app = grey.App(unique, broker=f"memory://{unique}", dead_letter_topic="bad-clicks")
    topic = app.topic("clicks", value_type=Click, partitions=1)
    dlq = app.topic("bad-clicks", partitions=1, value_serializer="raw")
    seen: list[str] = []

    @app.agent(topic)
    async def ok(stream: grey.Stream) -> None:
        async for click in stream:
            seen.append(click.user_id)

    async with app.running() as runtime:
        await topic.send(Click(user_id="a"))
        await dlq.send(b"placeholder")  # a record before, so offsets below are not all zero
        await runtime.producer.send("clicks", b"{not json", key=b"k")
        await runtime.producer.send("clicks", b'{"user_id": 7}')
        await topic.send(Click(user_id="b"))
        await wait_for(lambda: seen == ["a", "b"])
        await runtime.commit()
        assert runtime.decode_errors == 2
    records = MemoryBroker.named(unique).log("bad-clicks", 0).records[1:]
    assert [r.value for r in records] == [b"{not json", b'{"user_id": 7}']
    headers = dict(records[0].headers)
    assert headers["grey.topic"] == b"clicks" and headers["grey.offset"] == b"1"
    assert headers["grey.stage"] == b"decode" and b"malformed JSON" in headers["grey.error"]
    assert records[0].key == b"k"
    assert committed(unique, unique, TP("clicks", 0)) == 4


async def test_two_runtimes_share_partitions_and_lose_nothing_when_one_leaves(unique: str) -> None:
    url = f"memory://{unique}"
    seen: dict[str, list[int]] = {"a": [], "b": []}

    def build(name: str) -> tuple[grey.App, grey.Topic]:
        app = grey.App(unique, broker=url, checkpoint_interval=5)
        topic = app.topic("work", value_type=int, partitions=8)

        @app.agent(topic, name="worker")
        async def work(stream: grey.Stream) -> None:
            async for value in stream:
                seen[name].append(value)
                await asyncio.sleep(0.001)

        return app, topic

    app_a, topic = build("a")
    app_b, _ = build("b")
    async with app_a.running() as ra:
        async with app_b.running() as rb:
            await wait_for(lambda: len(ra.partitions) == 4 and len(rb.partitions) == 4)
            for i in range(400):
                await topic.send(i, key=str(i))
            await wait_for(lambda: len(seen["a"]) > 20 and len(seen["b"]) > 20)
        await wait_for(lambda: len(ra.partitions) == 8)
        await wait_for(lambda: set(seen["a"]) | set(seen["b"]) == set(range(400)))


async def test_revocation_commits_what_was_processed_so_the_next_owner_does_not_redo_it(unique: str) -> None:
    url = f"memory://{unique}"
    seen: dict[str, list[int]] = {"a": [], "b": []}

    def build(name: str) -> tuple[grey.App, grey.Topic]:
        # no periodic commits: only the revocation can commit
        app = grey.App(unique, broker=url, checkpoint_interval=10**9, commit_interval=3600)
        topic = app.topic("work", value_type=int, partitions=4)

        @app.agent(topic, name="worker")
        async def work(stream: grey.Stream) -> None:
            async for value in stream:
                seen[name].append(value)

        return app, topic

    app_a, topic = build("a")
    app_b, _ = build("b")
    async with app_a.running() as ra:
        for i in range(100):
            await topic.send(i, partition=i % 4)
        await wait_for(lambda: ra.processed == 100)
        assert all(committed(unique, unique, TP("work", p)) is None for p in range(4))
        async with app_b.running() as rb:
            await wait_for(lambda: len(ra.partitions) == 2 and len(rb.partitions) == 2)
            assert [committed(unique, unique, TP("work", p)) for p in range(4)] == [25, 25, 25, 25]
            await asyncio.sleep(0.1)
    assert seen["b"] == []  # nothing was handed over twice

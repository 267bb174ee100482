"""Agents on the memory transport, through the test harness and through app.running()."""

from __future__ import annotations

import asyncio
import random

import pytest

import grey
import grey.runtime.actor


class Click(grey.Record):
    user_id: str
    amount: float


def make_app(name: str) -> grey.App:
    return grey.App(name, broker=f"memory://{name}")


async def test_per_event_values_metadata_and_yield(unique: str) -> None:
    app = make_app(unique)
    clicks = app.topic("clicks", value_type=Click, partitions=4)
    doubled = app.topic("doubled", partitions=2)
    seen: list[tuple[object, str, int, int]] = []

    @app.agent(clicks, sink=[doubled])
    async def double(stream: grey.Stream):  # type: ignore[no-untyped-def]
        async for click in stream:
            event = stream.current_event
            assert event is not None
            seen.append((event.key, event.topic, event.partition, event.offset))
            yield {"user": click.user_id, "amount": click.amount * 2}

    async with double.test_context() as t:
        first = await t.put(Click(user_id="u1", amount=1.5), key="u1", headers={"h": "v"})
        await t.put(Click(user_id="u2", amount=2.0), key="u2")
        assert first.key == "u1" and first.headers == (("h", b"v"),)
        assert t.results == [{"user": "u1", "amount": 3.0}, {"user": "u2", "amount": 4.0}]
        assert sorted(t.sent("doubled"), key=str) == sorted(t.results, key=str)
    assert [s[0] for s in seen] == ["u1", "u2"]
    assert all(s[1] == "clicks" for s in seen)


async def test_agent_exception_surfaces_in_put_and_stops_only_that_partition(unique: str) -> None:
    app = make_app(unique)
    topic = app.topic("in", partitions=2)
    handled: list[int] = []

    @app.agent(topic)
    async def picky(stream: grey.Stream) -> None:
        async for value in stream:
            if value == 13:
                raise ValueError("unlucky")
            handled.append(value)

    async with picky.test_context() as t:
        await t.put(1, partition=0)
        with pytest.raises(ValueError, match="unlucky"):
            await t.put(13, partition=0)
        failure = t.runtime.failures[0]
        assert (failure.topic, failure.partition, failure.offset) == ("in", 0, 1)
        await t.put(2, partition=1)  # the other partition goes on
        with pytest.raises(TimeoutError):  # partition 0 is stopped: later events wait, unprocessed
            t.timeout = 0.3
            await t.put(3, partition=0)
    assert handled == [1, 2]


async def test_batches_are_per_partition_in_offset_order(unique: str) -> None:
    app = make_app(unique)
    topic = app.topic("nums", value_type=int, partitions=3)
    batches: list[tuple[int, list[int]]] = []

    @app.agent(topic)
    async def collect(stream: grey.Stream) -> None:
        async for batch in stream.batches(max=4):
            assert len(batch) <= 4
            assert [e.offset for e in batch.events] == list(range(batch.first_offset, batch.last_offset + 1))
            batches.append((batch.partition, list(batch)))

    async with app.running() as runtime:
        for i in range(30):
            await topic.send(i, partition=i % 3)
        while runtime.processed < 30:
            await asyncio.sleep(0.01)
    for p in range(3):
        got = [v for part, vs in batches if part == p for v in vs]
        assert got == list(range(p, 30, 3))


async def test_batches_within_waits_for_more(unique: str) -> None:
    app = make_app(unique)
    topic = app.topic("nums", value_type=int, partitions=1)
    sizes: list[int] = []

    @app.agent(topic)
    async def collect(stream: grey.Stream) -> None:
        async for batch in stream.batches(max=10, within=0.5):
            sizes.append(len(batch))

    async with app.running() as runtime:
        for i in range(5):
            await topic.send(i)
            await asyncio.sleep(0.02)
        while runtime.processed < 5:
            await asyncio.sleep(0.01)
    assert sum(sizes) == 5
    assert sizes[0] > 1  # later events joined the first batch instead of 5 batches of one


async def test_concurrency_keeps_per_key_order(unique: str) -> None:
    app = make_app(unique)
    topic = app.topic("orders", key_type=str, value_type=int, partitions=2)
    seen: dict[str, list[int]] = {}
    active = 0
    peak = 0

    @app.agent(topic, concurrency=4)
    async def handle(stream: grey.Stream) -> None:
        nonlocal active, peak
        async for value in stream:
            event = stream.current_event
            assert event is not None
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(random.random() / 1000)
            active -= 1
            seen.setdefault(event.key, []).append(value)

    keys = [f"k{i}" for i in range(12)]
    async with app.running() as runtime:
        for i in range(600):
            await topic.send(i, key=keys[i % len(keys)])
        while runtime.processed < 600:
            await asyncio.sleep(0.01)
    for j, key in enumerate(keys):
        assert seen[key] == list(range(j, 600, len(keys)))
    assert peak > 1  # different keys really ran concurrently


async def test_agent_send_timer_and_task(unique: str) -> None:
    app = make_app(unique)
    topic = app.topic("pings", partitions=1)
    got: list[str] = []
    ticks = 0

    @app.agent(topic)
    async def pong(stream: grey.Stream) -> None:
        async for value in stream:
            got.append(value)

    @app.task
    async def hello() -> None:
        await pong.send("from task")

    @app.timer(0.05)
    async def tick() -> None:
        nonlocal ticks
        ticks += 1

    async with app.running():
        for _ in range(200):
            if got and ticks >= 2:
                break
            await asyncio.sleep(0.01)
    assert got == ["from task"]
    assert ticks >= 2


def test_agent_must_be_async(unique: str) -> None:
    app = make_app(unique)
    with pytest.raises(TypeError, match="async def"):
        app.agent(app.topic("x"))(lambda stream: None)  # type: ignore[arg-type,return-value]


async def test_agent_returning_early_crashes_the_runtime(unique: str) -> None:
    app = make_app(unique)
    topic = app.topic("x", partitions=1)

    @app.agent(topic)
    async def quitter(stream: grey.Stream) -> None:
        async for _ in stream:
            break

    with pytest.raises(RuntimeError, match="crashed while running") as info:
        async with app.running() as runtime:
            await topic.send(1)
            assert runtime.crashed is not None
            with pytest.raises(grey.runtime.actor.AgentStopped):
                await asyncio.wait_for(asyncio.shield(runtime.crashed), 5)
    assert isinstance(info.value.__cause__, grey.runtime.actor.AgentStopped)


async def test_send_when_not_running_says_how() -> None:
    app = grey.App("idle", broker="memory://idle")
    with pytest.raises(RuntimeError, match="grey worker"):
        await app.topic("t").send(1)

"""Exactly-once on the memory broker: what a transaction per partition group commits, and what it drops."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

import grey
from grey.sinks.staged import SinkMarker, StagedSink
from grey.tables import Count
from grey.transport import TP, ClientSettings, Message, open_transport
from grey.transport.memory import MemoryBroker
from tests.waiting import wait_for


class DictSink(StagedSink):
    """A staged sink into a dict, with the marker rule of the real ones (apply only newer batches)."""

    delivery = "exactly_once"
    name = "dict"

    def __init__(self, fail_flushes: int = 0) -> None:
        self.data: dict[str, Any] = {}
        self.markers: dict[str, int] = {}
        self.staged: dict[str, dict[str, Any]] = {}
        self.fail_flushes = fail_flushes
        self.flushes = 0

    def stage(self, group: str, value: Any) -> None:
        self.staged.setdefault(group, {})[value["user"]] = value["total"]

    def staged_groups(self) -> set[str]:
        return set(self.staged)

    def discard(self, group: str) -> None:
        self.staged.pop(group, None)

    async def flush(self, marker: SinkMarker) -> bool:
        self.flushes += 1
        if self.fail_flushes:
            self.fail_flushes -= 1
            raise ConnectionError("sink unavailable (test)")
        batch = self.staged.pop(marker.group, {})
        if self.markers.get(marker.group, -1) >= marker.offset:
            return False
        self.data.update(batch)
        self.markers[marker.group] = marker.offset
        return True


def summing_app(unique: str, data_dir: Path, sink: StagedSink, url: str | None = None, *, send_many: bool = False,
                **options: Any) -> tuple[grey.App, grey.Topic, Any]:
    """Sum amounts per user in a table, forward each click enriched (with ``send``, or ``send_many``),
    stage the totals in ``sink``."""
    options.setdefault("commit_interval", 0.05)
    app = grey.App(unique, broker=url or f"memory://{unique}", processing_guarantee="exactly_once",
                   data_dir=str(data_dir), retry_backoff=0.01, **options)
    clicks = app.topic(f"{unique}-clicks", value_type=dict, partitions=4)
    out = app.topic(f"{unique}-enriched", value_type=dict, partitions=4)
    totals = app.Table("totals", default=int)

    @app.agent(clicks, name="sum", sink=[sink])
    async def add_up(stream: grey.Stream) -> Any:
        async for click in stream:
            if click.get("poison"):
                raise ValueError("poison event (test)")
            totals[click["user"]] += click["amount"]
            if send_many:
                await out.send_many([(click["user"], {**click, "enriched": True})])
            else:
                await out.send({**click, "enriched": True}, key=click["user"])
            yield {"user": click["user"], "total": totals[click["user"]]}

    return app, clicks, totals


async def read_all(url: str, topic: str, isolation: str = "read_committed", partitions: int = 4
                   ) -> list[Message]:
    """Everything a reader with ``isolation`` gets from the topic, from the beginning to the end."""
    consumer = open_transport(url).consumer(ClientSettings(group_id="", isolation_level=isolation))
    await consumer.start()
    tps = [TP(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    for tp, begin in (await consumer.beginning_offsets(tps)).items():
        consumer.seek(tp, begin)
    found: list[Message] = []
    deadline = asyncio.get_running_loop().time() + 30
    while any([await consumer.position(tp) < ends[tp] for tp in tps]):
        assert asyncio.get_running_loop().time() < deadline, f"could not read {topic} to its end"
        for messages in (await consumer.getmany(timeout_ms=200, max_records=None)).values():
            found.extend(messages)
    await consumer.stop()
    return found


async def committed_offset(url: str, group: str, tp: TP) -> int | None:
    consumer = open_transport(url).consumer(ClientSettings(group_id=group))
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


def ids_of(messages: list[Message]) -> list[int]:
    return sorted(json.loads(m.value or b"null")["id"] for m in messages)


async def produce(clicks: grey.Topic, n: int, start: int = 0) -> dict[str, int]:
    expected: dict[str, int] = {}
    for i in range(start, start + n):
        user = f"u{i % 11}"
        await clicks.send({"id": i, "user": user, "amount": i % 5 + 1}, key=user)
        expected[user] = expected.get(user, 0) + i % 5 + 1
    return expected


async def test_outputs_table_and_sink_commit_with_the_offsets(unique: str, tmp_path: Path) -> None:
    sink = DictSink()
    app, clicks, totals = summing_app(unique, tmp_path, sink)
    async with app.running() as runtime:
        expected = await produce(clicks, 1000)
        await wait_for(lambda: runtime.processed == 1000)
        assert runtime.transactions is not None
        await wait_for(lambda: sum(MemoryBroker.named(unique).group(unique).committed.values()) == 1000)
        assert totals.as_dict() == expected
    assert ids_of(await read_all(f"memory://{unique}", f"{unique}-enriched")) == list(range(1000))
    assert sink.data == expected
    assert runtime.transactions.committed > 0 and runtime.transactions.aborted == 0
    markers = await read_all(f"memory://{unique}", f"{unique}-sink-markers", partitions=1)
    assert markers, "sink markers are written to the markers topic inside the transactions"
    metric = REGISTRY.get_sample_value
    assert metric("grey_transactions_committed_total", {"app": unique}) == runtime.transactions.committed
    assert metric("grey_transactions_total", {"app": unique}) >= runtime.transactions.committed
    assert metric("grey_transaction_commit_seconds_count", {"app": unique}) == runtime.transactions.committed


@pytest.mark.parametrize("send_many", [False, True], ids=["send", "send_many"])
async def test_an_agent_error_aborts_its_groups_open_transaction(unique: str, tmp_path: Path, send_many: bool) -> None:
    sink = DictSink()

    async def in_sink() -> dict[str, int]:
        return sink.data

    await poison_mid_batch(f"memory://{unique}", unique, tmp_path, sink, in_sink, send_many=send_many)


async def poison_mid_batch(url: str, unique: str, tmp_path: Path, sink: StagedSink,
                           in_sink: Callable[[], Awaitable[dict[str, int]]], *, send_many: bool = False) -> None:
    """An agent fails mid-batch: its group's outputs, changelog records and sink records all vanish."""
    app, clicks, _ = summing_app(unique, tmp_path, sink, url, send_many=send_many, commit_interval=60)
    async with app.running() as runtime:
        await wait_for(lambda: len(runtime.partitions) == 4 and not runtime.recovering, 60)
        poisoned = (await (await clicks.send({"id": -1, "user": "u0", "amount": 1}, key="u0"))).partition
        expected = await produce(clicks, 300)
        await clicks.send({"id": -2, "user": "u0", "poison": True}, key="u0")
        await wait_for(lambda: runtime.failures != [], 30)
        await asyncio.sleep(0.1)
    committed = await read_all(url, f"{unique}-enriched")
    uncommitted = await read_all(url, f"{unique}-enriched", "read_uncommitted")
    assert all(m.partition != poisoned for m in committed), "the failed group's outputs were aborted"
    assert any(m.partition == poisoned for m in uncommitted), "they had been sent (so the check can fail)"
    assert {m.partition for m in committed} == {m.partition for m in uncommitted} - {poisoned}
    changelog = await read_all(url, f"{unique}-totals-changelog")
    assert changelog and all(m.partition != poisoned for m in changelog), "no trace in the table's changelog"
    poisoned_users = {m.key.decode() for m in uncommitted if m.partition == poisoned and m.key}
    stored = await in_sink()
    assert poisoned_users and set(stored) == set(expected) - poisoned_users, "no trace in the sink"
    assert all(stored[user] == expected[user] for user in stored), "the other groups' totals are exact"
    assert await committed_offset(url, unique, TP(f"{unique}-clicks", poisoned)) is None


async def test_a_failing_sink_aborts_then_retries_to_exact_totals(unique: str, tmp_path: Path) -> None:
    sink = DictSink(fail_flushes=3)
    app, clicks, totals = summing_app(unique, tmp_path, sink)
    async with app.running() as runtime:
        expected = await produce(clicks, 500)
        await wait_for(lambda: sum(MemoryBroker.named(unique).group(unique).committed.values()) == 500)
        assert runtime.transactions is not None and runtime.transactions.aborted >= 1
        assert totals.as_dict() == expected
    assert sink.data == expected
    outputs = await read_all(f"memory://{unique}", f"{unique}-enriched")
    assert ids_of(outputs) == list(range(500)), "the aborted attempts left no duplicates"
    aborted = REGISTRY.get_sample_value("grey_transactions_aborted_total", {"app": unique, "reason": "error"})
    assert aborted == runtime.transactions.aborted


async def test_a_restart_continues_from_the_committed_state(unique: str, tmp_path: Path) -> None:
    sink = DictSink()
    app, clicks, _ = summing_app(unique, tmp_path, sink)
    async with app.running() as runtime:
        first = await produce(clicks, 400)
        await wait_for(lambda: runtime.processed == 400)
    again, clicks2, totals2 = summing_app(unique, tmp_path, sink)
    async with again.running() as runtime:
        more = await produce(clicks2, 400, start=400)
        await wait_for(lambda: runtime.processed == 400)
        await wait_for(lambda: sum(MemoryBroker.named(unique).group(unique).committed.values()) == 800)
        assert totals2.as_dict() == {u: first.get(u, 0) + more.get(u, 0) for u in first | more}
    assert ids_of(await read_all(f"memory://{unique}", f"{unique}-enriched")) == list(range(800))


def test_exactly_once_checkpoints_on_time_by_default(unique: str) -> None:
    app = grey.App(unique, broker=f"memory://{unique}", processing_guarantee="exactly_once")
    assert app.conf.commit_interval == 1.0 and app.conf.checkpoint_interval >= 100_000
    explicit = grey.App(unique, broker=f"memory://{unique}", processing_guarantee="exactly_once",
                        commit_interval=0.1, checkpoint_interval=5000)
    assert explicit.conf.commit_interval == 0.1 and explicit.conf.checkpoint_interval == 5000


@pytest.fixture(autouse=True)
def _forget_brokers(unique: str) -> Any:
    yield
    MemoryBroker.forget(unique)


async def test_windows_closed_on_the_clock_and_dead_letters_commit_in_the_transaction(
    unique: str, tmp_path: Path
) -> None:
    app = grey.App(unique, broker=f"memory://{unique}", processing_guarantee="exactly_once", data_dir=str(tmp_path),
                   commit_interval=0.1, dead_letter_topic="bad-clicks")
    clicks = app.topic("clicks", key_type=str, value_type=dict, partitions=4)
    closed = app.topic("closed", key_type=str, value_type=dict, partitions=4)
    windows = app.Table("per-minute", key_type=str).tumbling(
        60, aggregations={"count": Count()}, time="at", on_close=closed, idle_close=0.2)

    @app.agent(clicks)
    async def count(stream: grey.Stream) -> None:
        async for batch in stream.batches(max=100):
            windows.update_many(batch, key=lambda click: click["user"])

    async with app.running() as runtime:
        await wait_for(lambda: len(runtime.partitions) == 4 and not runtime.recovering)
        await clicks.send({"user": "ann", "at": 1019.9}, key="ann")
        producer = runtime.producer
        await producer.send("clicks", b"{not json", key=b"ann")
        # idle: stream time runs on with the clock and the window [960, 1020) closes from the tick task
        await wait_for(lambda: len(read_committed_now(unique, "closed")) == 1, 5)
        await wait_for(lambda: len(read_committed_now(unique, "bad-clicks")) == 1, 5)
    assert json.loads(read_committed_now(unique, "closed")[0])["count"] == 1


def read_committed_now(unique: str, topic: str) -> list[bytes]:
    """Committed values of a memory topic, without a consumer (for polling in wait_for)."""
    logs = MemoryBroker.named(unique).topics.get(topic, [])
    return [r.value for log in logs for r in log.records
            if r.value is not None and not r.control and (r.txn is None or r.txn.state == "committed")]

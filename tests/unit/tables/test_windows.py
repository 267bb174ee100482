"""Windowed tables in a running app (memory broker): closing, late events, idle close, expiry, recovery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grey
from grey.tables import Avg, Count, Sum, Window, WindowedTable
from tests.waiting import wait_for


class Click(grey.Record):
    user: str
    amount: float
    latency: float
    at: float  # event time, seconds


def clicks_app(unique: str, data_dir: Path, closed: list[tuple[Any, Window, dict[str, Any]]],
               **window_options: Any) -> tuple[grey.App, grey.Topic, WindowedTable]:
    app = grey.App(unique, broker=f"memory://{unique}", data_dir=str(data_dir), commit_interval=0.2)
    topic = app.topic("clicks", key_type=str, value_type=Click, partitions=2)
    totals = app.Table("totals", key_type=str).tumbling(
        60, aggregations={"count": Count(), "amount": Sum("amount"), "latency": Avg("latency")},
        time="at", on_close=lambda key, window, results: closed.append((key, window, results)),
        **window_options,
    )

    @app.agent(topic, name="aggregate")
    async def aggregate(stream: grey.Stream) -> None:
        async for batch in stream.batches(max=100):
            totals.update_many(batch, key=lambda click: click.user)

    return app, topic, totals


async def test_windows_close_once_with_final_aggregates_and_late_events_are_counted(
    unique: str, tmp_path: Path
) -> None:
    closed: list[tuple[Any, Window, dict[str, Any]]] = []
    app, topic, totals = clicks_app(unique, tmp_path, closed, grace=30, idle_close=None)
    async with app.running():
        for at, amount in [(0, 1.0), (10, 2.0), (59.9, 3.0), (61, 5.0), (20, 7.0), (95, 1.0)]:
            await topic.send(Click(user="ann", amount=amount, latency=amount * 10, at=at), key="ann")
        # stream time 95 >= 60 + 30: window [0, 60) closes; the event at t=20 arrived at stream time 61: in grace
        await wait_for(lambda: len(closed) == 1, 5)
        await topic.send(Click(user="ann", amount=100.0, latency=1.0, at=5), key="ann")  # after the close: late
        await wait_for(lambda: totals.late_events == 1, 5)
    key, window, results = closed[0]
    assert (key, window) == ("ann", Window(0, 60))
    assert results == {"count": 4, "amount": 13.0, "latency": 32.5}


async def test_idle_partitions_close_their_windows_on_the_wall_clock(unique: str, tmp_path: Path) -> None:
    closed: list[tuple[Any, Window, dict[str, Any]]] = []
    app, topic, _ = clicks_app(unique, tmp_path, closed, grace=0.0, idle_close=0.3)
    async with app.running():
        await topic.send(Click(user="bob", amount=1.0, latency=1.0, at=1000.0), key="bob")
        # no more traffic: after 0.3 s idle, stream time runs on with the clock; [960, 1020) ends 20 s later,
        # so only a partition idle for 20 s would close it. Use a window near its end instead:
        await topic.send(Click(user="bob", amount=2.0, latency=1.0, at=1019.8), key="bob")
        await wait_for(lambda: len(closed) == 1, 5)
    assert closed[0][1] == Window(960, 1020) and closed[0][2]["count"] == 2


async def test_closed_windows_expire_from_the_store(unique: str, tmp_path: Path) -> None:
    closed: list[tuple[Any, Window, dict[str, Any]]] = []
    app, topic, totals = clicks_app(unique, tmp_path, closed, grace=0.0, expires=120, idle_close=None)
    async with app.running():
        await topic.send(Click(user="cy", amount=1.0, latency=1.0, at=0), key="cy")
        await topic.send(Click(user="cy", amount=1.0, latency=1.0, at=70), key="cy")
        await wait_for(lambda: len(closed) == 1, 5)
        assert [w for (_, w), _ in totals.items()] == [Window(0, 60), Window(60, 120)]
        await topic.send(Click(user="cy", amount=1.0, latency=1.0, at=181), key="cy")  # 0..60 + 120 <= 181
        await wait_for(lambda: Window(0, 60) not in [w for (_, w), _ in totals.items()], 5)
    assert [w for _, w, _ in closed] == [Window(0, 60), Window(60, 120)]


async def test_open_windows_survive_a_restart(unique: str, tmp_path: Path) -> None:
    closed: list[tuple[Any, Window, dict[str, Any]]] = []
    app, topic, _ = clicks_app(unique, tmp_path, closed, grace=0.0, idle_close=None)
    async with app.running():
        await topic.send(Click(user="di", amount=2.0, latency=1.0, at=10), key="di")
        await topic.send(Click(user="di", amount=3.0, latency=1.0, at=20), key="di")
        await wait_for(lambda: app.runtime is not None and app.runtime.processed == 2, 5)
    assert closed == []
    again, topic2, _ = clicks_app(unique, tmp_path / "fresh", closed, grace=0.0, idle_close=None)
    async with again.running() as runtime:
        await wait_for(lambda: len(runtime.partitions) == 2 and not runtime.recovering, 5)
        await topic2.send(Click(user="di", amount=4.0, latency=1.0, at=65), key="di")
        await wait_for(lambda: len(closed) == 1, 5)
    assert closed[0][2] == {"count": 2, "amount": 5.0, "latency": 1.0}  # rebuilt from the changelog


async def test_late_events_and_closed_windows_are_metrics(unique: str, tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    closed: list[tuple[Any, Window, dict[str, Any]]] = []
    app, topic, _ = clicks_app(unique, tmp_path, closed, grace=0.0, idle_close=None)
    async with app.running() as runtime:
        await topic.send(Click(user="ed", amount=1.0, latency=1.0, at=0), key="ed")
        await topic.send(Click(user="ed", amount=1.0, latency=1.0, at=61), key="ed")
        await topic.send(Click(user="ed", amount=1.0, latency=1.0, at=1), key="ed")  # window [0, 60) closed
        await wait_for(lambda: runtime.processed == 3 and len(closed) == 1, 5)
    assert REGISTRY.get_sample_value("grey_late_events_total", {"table": "totals"}) >= 1
    assert REGISTRY.get_sample_value("grey_windows_closed_total", {"table": "totals"}) >= 1
    assert REGISTRY.get_sample_value("grey_events_processed_total", {"app": unique}) == 3


async def test_a_window_closed_before_a_restart_stays_closed(unique: str, tmp_path: Path) -> None:
    closed: list[tuple[Any, Window, dict[str, Any]]] = []
    app, topic, _ = clicks_app(unique, tmp_path, closed, grace=30.0, idle_close=None)
    async with app.running():
        await topic.send(Click(user="fa", amount=1.0, latency=1.0, at=10), key="fa")
        await topic.send(Click(user="fa", amount=1.0, latency=1.0, at=95), key="fa")  # closes [0, 60)
        await wait_for(lambda: len(closed) == 1, 5)
    again, topic2, totals = clicks_app(unique, tmp_path / "fresh", closed, grace=30.0, idle_close=None)
    async with again.running() as runtime:
        await wait_for(lambda: len(runtime.partitions) == 2 and not runtime.recovering, 5)
        # recovered stream time is only a lower bound (60), so the grace rule alone would accept t=20
        await topic2.send(Click(user="fa", amount=5.0, latency=1.0, at=20), key="fa")
        await wait_for(lambda: totals.late_events == 1, 5)
    assert len(closed) == 1 and closed[0][2]["count"] == 1


async def test_kafka_timestamps_are_per_event_in_a_batch(unique: str, tmp_path: Path) -> None:
    closed: list[tuple[Any, Window, dict[str, Any]]] = []
    app = grey.App(unique, broker=f"memory://{unique}", data_dir=str(tmp_path))
    topic = app.topic("clicks", key_type=str, value_type=float, partitions=1)
    totals = app.Table("totals", key_type=str).tumbling(
        60, aggregations={"count": Count()}, idle_close=None,  # no time=: the Kafka timestamp
        on_close=lambda key, window, results: closed.append((key, window, results)),
    )
    errors: list[Exception] = []

    @app.agent(topic, name="aggregate")
    async def aggregate(stream: grey.Stream) -> None:
        async for batch in stream.batches(max=100, within=0.2):
            try:
                totals.update("k", batch[0])  # which event's timestamp? refused
            except KeyError as exc:
                errors.append(exc)
            totals.update_many(batch, key=lambda _: "k")

    async with app.running():
        for at in (10.0, 20.0, 70.0):  # one batch, two windows
            await topic.send(1.0, key="k", timestamp=at)
        await wait_for(lambda: len(closed) == 1, 5)
    assert closed[0][1] == Window(0, 60) and closed[0][2] == {"count": 2}
    assert errors and "update_many" in str(errors[0])

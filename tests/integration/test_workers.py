"""`grey worker` processes on the real broker: sharing, crashes, shutdown, bad input."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

from grey.transport import TopicSpec
from tests.integration.workers import (
    Worker,
    committed_offsets,
    create_topics,
    end_total,
    produce_json,
    read_all,
    start_worker,
    wait_until,
)

APP = "tests.integration.apps.forwarder:app"


def env(unique: str, **extra: str) -> dict[str, str]:
    return {"APP_ID": unique, "SRC": f"{unique}-in", "OUT": f"{unique}-out", **extra}


async def setup(kafka_url: str, unique: str, count: int) -> None:
    await create_topics(kafka_url, TopicSpec(f"{unique}-in", 8), TopicSpec(f"{unique}-out", 8))
    await produce_json(kafka_url, f"{unique}-in", [(f"user-{i % 997}", {"id": i}) for i in range(count)])


def assigned_count(worker: Worker) -> int:
    """Partitions the worker holds now, from its last 'assigned N partition(s)' log line."""
    found = re.findall(r"assigned (\d+) partition", worker.output())
    return int(found[-1]) if found else 0


async def wait_for_split(a: Worker, b: Worker) -> None:
    async def split() -> bool:
        return assigned_count(a) == 4 and assigned_count(b) == 4

    await wait_until(split, 60, "two workers to hold 4 partitions each")


async def test_two_workers_split_eight_partitions(kafka_url: str, unique: str, tmp_path: Path) -> None:
    a = start_worker(APP, env(unique, DELAY="0.02"), tmp_path / "a.log")
    b = start_worker(APP, env(unique, DELAY="0.02"), tmp_path / "b.log")
    try:
        await wait_for_split(a, b)
        await setup(kafka_url, unique, 20_000)
        out = await read_all(kafka_url, f"{unique}-out", f"{unique}-check", until=20_000, timeout=120)
    finally:
        assert a.terminate() == 0, a.output()[-3000:]
        assert b.terminate() == 0, b.output()[-3000:]
    ids = Counter(r["id"] for r in out)
    assert set(ids) == set(range(20_000))
    by_pid: dict[int, set[int]] = {}
    for r in out:
        by_pid.setdefault(r["pid"], set()).add(r["p"])
    assert set(by_pid) == {a.proc.pid, b.proc.pid}
    assert by_pid[a.proc.pid].isdisjoint(by_pid[b.proc.pid])  # no rebalance happened mid-way
    assert len(by_pid[a.proc.pid]) == len(by_pid[b.proc.pid]) == 4


async def test_kill_9_of_one_worker_loses_no_event(kafka_url: str, unique: str, tmp_path: Path) -> None:
    count = 20_000
    a = start_worker(APP, env(unique, DELAY="0.05"), tmp_path / "a.log")
    b = start_worker(APP, env(unique, DELAY="0.05"), tmp_path / "b.log")
    try:
        await wait_for_split(a, b)
        await setup(kafka_url, unique, count)

        async def some_done() -> bool:
            return await end_total(kafka_url, f"{unique}-out", 8) >= 3000

        await wait_until(some_done, 60, "3000 forwarded events")
        a.kill()  # mid-stream, no chance to commit
        out = await read_all(kafka_url, f"{unique}-out", f"{unique}-check", until=count, timeout=180)
        ids = Counter(r["id"] for r in out)
        lost = set(range(count)) - set(ids)
        assert not lost, f"{len(lost)} events lost, e.g. {sorted(lost)[:10]}"
        assert assigned_count(b) == 8
        duplicates = sum(n - 1 for n in ids.values())
        print(f"kill -9: events={count} lost=0 duplicates={duplicates} (at-least-once may repeat)")
    finally:
        if a.proc.poll() is None:
            a.kill()
        assert b.terminate() == 0, b.output()[-3000:]


async def test_sigterm_commits_what_was_processed(kafka_url: str, unique: str, tmp_path: Path) -> None:
    count = 5_000
    await setup(kafka_url, unique, count)
    worker = start_worker(APP, env(unique, MODE="event", DELAY="0.001"), tmp_path / "w1.log")

    async def some_done() -> bool:
        return await end_total(kafka_url, f"{unique}-out", 8) >= 1000

    try:
        await wait_until(some_done, 60, "1000 forwarded events")
    finally:
        code = worker.terminate()
    assert code == 0, worker.output()[-3000:]
    forwarded = await end_total(kafka_url, f"{unique}-out", 8)
    committed = await committed_offsets(kafka_url, unique, f"{unique}-in", 8)
    total_committed = sum(o or 0 for o in committed.values())
    assert forwarded < count, "the worker finished everything; the test did not stop it mid-stream"
    assert 0 <= forwarded - total_committed <= 100, (forwarded, committed)

    again = start_worker(APP, env(unique, MODE="event"), tmp_path / "w2.log")
    try:
        out = await read_all(kafka_url, f"{unique}-out", f"{unique}-check", until=count, timeout=120)
    finally:
        assert again.terminate() == 0, again.output()[-3000:]
    ids = Counter(r["id"] for r in out)
    assert set(ids) == set(range(count))
    assert len(out) - count <= 100  # at most the last uncommitted batch was redone


async def test_malformed_json_is_reported_and_skipped(kafka_url: str, unique: str, tmp_path: Path) -> None:
    await create_topics(kafka_url, TopicSpec(f"{unique}-in", 8), TopicSpec(f"{unique}-out", 8))
    await produce_json(kafka_url, f"{unique}-in",
                       [("k", {"id": 1}), ("k", b'{"id": 2,,'), ("k", {"id": 3})])
    worker = start_worker(APP, env(unique, MODE="event"), tmp_path / "w.log")
    try:
        out = await read_all(kafka_url, f"{unique}-out", f"{unique}-check", until=2, timeout=60)
        await asyncio.sleep(0.5)
        assert worker.proc.poll() is None, "the worker died on bad input"
    finally:
        code = worker.terminate()
    assert code == 0
    assert sorted(r["id"] for r in out) == [1, 3]
    log = worker.output()
    assert re.search(rf"bad record at topic={unique}-in partition=\d offset=1 \(decode\): malformed JSON", log), log


async def test_worker_exits_non_zero_when_an_agent_crashes(kafka_url: str, unique: str, tmp_path: Path) -> None:
    await create_topics(kafka_url, TopicSpec(f"{unique}-in", 1))
    await produce_json(kafka_url, f"{unique}-in", [("k", {"id": 1})])
    worker = start_worker("tests.integration.apps.quitter:app", {"APP_ID": unique, "SRC": f"{unique}-in"},
                          tmp_path / "w.log")
    code = await asyncio.to_thread(worker.wait, 60)
    assert code != 0
    assert "returned while its stream was still running" in worker.output()

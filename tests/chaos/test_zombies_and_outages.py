"""Exactly-once when a worker turns zombie, and when the sink goes away for a while (real Kafka and Redis)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grey.chaos.eos import ChaosConfig, ChaosReport, WorkerPool, caught_up, check, create_topics, produce, workload


async def wait_caught_up(cfg: ChaosConfig, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not await caught_up(cfg):
        assert time.monotonic() < deadline, f"the workers did not catch up within {seconds}s"
        await asyncio.sleep(0.5)


async def wait_logged(pool: WorkerPool, slot: int, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in pool.output(slot):
        assert time.monotonic() < deadline, f"worker {slot} did not log {text!r} within {seconds}s"
        await asyncio.sleep(0.5)


async def prepare(cfg: ChaosConfig) -> tuple[list[tuple[int, str, int]], WorkerPool, ChaosReport]:
    """The workload, its topics, a pool of (not yet started) workers, and an empty report."""
    assert cfg.work_dir is not None
    await create_topics(cfg)
    events = workload(cfg)
    return events, WorkerPool(cfg, cfg.work_dir), ChaosReport(events=len(events))


async def test_a_paused_zombie_is_fenced_and_writes_nothing(kafka_url: str, redis_url: str, tmp_path: Path) -> None:
    # A long commit interval leaves the zombie holding processed, uncommitted work when it is paused.
    cfg = ChaosConfig(events=6000, partitions=4, users=200, duration=2, commit_interval=4.0,
                      broker=kafka_url, redis=redis_url, work_dir=tmp_path)
    events, pool, report = await prepare(cfg)
    try:
        pool.start(0)
        await produce(cfg, events[:2000])
        await wait_caught_up(cfg, 60)  # the zombie-to-be owns every group and has committed once
        await produce(cfg, events[2000:4000])
        await asyncio.sleep(1.5)  # processed, not yet committed (commit interval 4 s)
        pool.freeze(0)
        pool.start(1)  # takes every group after worker 0's session times out, fencing its producers
        # Caught up alone proves nothing here: the zombie may have committed everything just before the
        # pause. Wake it only once worker 1 owns all four groups.
        await wait_logged(pool, 1, "assigned 4 partition(s)", 90)
        await wait_caught_up(cfg, 90)
        pool.thaw(0)  # the zombie wakes up with an open transaction and tries to commit it
        await produce(cfg, events[4000:])
        await wait_caught_up(cfg, 90)
    finally:
        pool.stop_all()
    await check(cfg, events, report)
    assert "producer fenced" in pool.output(0), "the zombie never tried to commit: the test proved nothing"
    assert report.ok, f"{report.line()}: {report.examples}"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    """A redis-server of this test's own (so it can be stopped), persisting to an append-only file."""
    server = shutil.which("redis-server")
    assert server, "redis-server is missing: scripts/services installs it (apt-get install redis-server)"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path / "redis"
    data.mkdir()
    yield server, port, data
    subprocess.run(["pkill", "-f", f"redis-server 127.0.0.1:{port}"], check=False)


def start_redis(server: str, port: int, data: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "yes", "--dir", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline, "the private redis-server did not start"
            time.sleep(0.05)


async def test_a_sink_outage_aborts_and_retries_to_exact_totals(
    kafka_url: str, private_redis: tuple[str, int, Path], tmp_path: Path
) -> None:
    server, port, data = private_redis
    redis = start_redis(server, port, data)
    cfg = ChaosConfig(events=8000, partitions=4, workers=2, users=200, duration=12, commit_interval=0.5,
                      broker=kafka_url, redis=f"redis://127.0.0.1:{port}/0", work_dir=tmp_path)
    cfg.extra_env["GREY_RETRY_BACKOFF"] = "0.2"
    events, pool, report = await prepare(cfg)
    try:
        pool.start(0)
        pool.start(1)
        producing = asyncio.get_running_loop().create_task(produce(cfg, events))
        await asyncio.sleep(4)
        redis.terminate()  # a clean shutdown: what was applied is in the append-only file
        redis.wait(10)
        await asyncio.sleep(4)  # checkpoints fail meanwhile, abort, and back off
        redis = start_redis(server, port, data)
        await producing
        await wait_caught_up(cfg, 120)
    finally:
        pool.stop_all()
    try:
        await check(cfg, events, report)
    finally:
        redis.terminate()
        redis.wait(10)
    logs = pool.output()
    assert "checkpoint failed" in logs and "transaction aborted" in logs, "Redis was down but nothing aborted"
    assert report.ok, f"{report.line()}: {report.examples}"

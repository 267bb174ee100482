"""Kill workers mid-stream, then check event by event that nothing was lost or repeated.

    python -m grey.chaos.eos --events 200000 --workers 3 --duration 60
    scripts/chaos-eos --guarantee at_least_once      # the same run without transactions

It produces a known workload (events with an id, a user and an amount, keyed
by user, over ``--partitions`` partitions) at an even pace for ``--duration``
seconds while ``--workers`` ``grey worker`` processes of :mod:`grey.chaos.app`
process it. Every ``--kill-every`` seconds (give or take half) a random worker
gets SIGKILL and is started again ``--restart-after`` seconds later. When the
workload is in and the workers caught up, they stop, and the checker reads
with ``read_committed``:

- the enriched output topic: every event id exactly once (``duplicates``, ``lost``);
- the totals table's changelog: every user's total equals the sum of its amounts;
- Redis: the same totals under ``chaos:{run}:{user}``.

The last line is ``events=N duplicates=0 lost=0 table_mismatch=0
redis_mismatch=0``; the exit status is 1 when any count is not zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from grey.transport import TP, ClientSettings, Consumer, open_transport


@dataclass
class ChaosConfig:
    events: int = 200_000
    partitions: int = 8
    workers: int = 3
    users: int = 1000
    duration: float = 60.0  # seconds over which the workload is produced
    kill_every: float = 4.0  # seconds between kills, on average (0: no kills)
    restart_after: float = 1.0
    guarantee: str = "exactly_once"
    commit_interval: float = 0.5
    broker: str = "kafka://127.0.0.1:9092"
    redis: str = "redis://127.0.0.1:6379/0"
    seed: int = 1
    settle_timeout: float = 180.0
    work_dir: Path | None = None
    run: str = field(default_factory=lambda: f"chaos{uuid.uuid4().hex[:8]}")
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class ChaosReport:
    events: int
    outputs: int = 0
    duplicates: int = 0
    lost: int = 0
    table_mismatch: int = 0
    redis_mismatch: int = 0
    kills: int = 0
    caught_up: bool = False
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.table_mismatch or self.redis_mismatch)

    def line(self) -> str:
        return (f"events={self.events} duplicates={self.duplicates} lost={self.lost} "
                f"table_mismatch={self.table_mismatch} redis_mismatch={self.redis_mismatch}")


def workload(cfg: ChaosConfig) -> list[tuple[int, str, int]]:
    """(id, user, amount) for every event, the same for the same seed."""
    rng = random.Random(cfg.seed)
    return [(i, f"user{rng.randrange(cfg.users)}", rng.randint(1, 100)) for i in range(cfg.events)]


def expected_totals(events: Sequence[tuple[int, str, int]]) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for _, user, amount in events:
        totals[user] += amount
    return dict(totals)


# -- the workers -------------------------------------------------------------


class WorkerPool:
    """``grey worker`` processes of the chaos app, one data directory per slot."""

    def __init__(self, cfg: ChaosConfig, work_dir: Path) -> None:
        self.cfg = cfg
        self.work_dir = work_dir
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.logs: dict[int, IO[bytes]] = {}
        self.starts: Counter[int] = Counter()

    def env(self, slot: int) -> dict[str, str]:
        cfg = self.cfg
        return {
            **os.environ, "PYTHONUNBUFFERED": "1",
            "CHAOS_RUN": cfg.run, "CHAOS_PARTITIONS": str(cfg.partitions), "CHAOS_GUARANTEE": cfg.guarantee,
            "CHAOS_REDIS": cfg.redis, "CHAOS_COMMIT_INTERVAL": str(cfg.commit_interval),
            "GREY_BROKER": cfg.broker, "GREY_DATA_DIR": str(self.work_dir / f"worker{slot}"),
            # A killed worker's partitions move after the session timeout: keep it short.
            "GREY_SESSION_TIMEOUT_MS": "6000", "GREY_HEARTBEAT_INTERVAL_MS": "1000",
            **cfg.extra_env,
        }

    def start(self, slot: int) -> None:
        self.starts[slot] += 1
        log = (self.work_dir / f"worker{slot}.{self.starts[slot]}.log").open("wb")
        self.logs[slot] = log
        self.procs[slot] = subprocess.Popen(
            [sys.executable, "-m", "grey", "worker", "-A", "grey.chaos.app", "--loglevel", "info"],
            env=self.env(slot), stdout=log, stderr=subprocess.STDOUT,
        )

    def kill(self, slot: int) -> None:
        proc = self.procs.pop(slot)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.logs.pop(slot).close()

    def freeze(self, slot: int) -> None:
        """SIGSTOP: the worker keeps its sockets but answers nothing (a zombie in the making)."""
        self.procs[slot].send_signal(signal.SIGSTOP)

    def thaw(self, slot: int) -> None:
        self.procs[slot].send_signal(signal.SIGCONT)

    def alive(self) -> list[int]:
        return [slot for slot, proc in self.procs.items() if proc.poll() is None]

    def stop_all(self, timeout: float = 60.0) -> dict[int, int]:
        """SIGTERM every worker; their exit codes (-9 for one that had to be killed)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: dict[int, int] = {}
        for slot, proc in self.procs.items():
            try:
                codes[slot] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[slot] = proc.wait()
        for log in self.logs.values():
            log.close()
        self.procs.clear()
        self.logs.clear()
        return codes

    def output(self, slot: int | None = None) -> str:
        """What the workers (or one slot's worker, every start of it) logged."""
        pattern = "worker*.log" if slot is None else f"worker{slot}.*.log"
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.work_dir.glob(pattern)))


# -- talking to the broker and Redis -------------------------------------------


def _settings(group: str = "", isolation: str = "read_committed") -> ClientSettings:
    return ClientSettings(group_id=group, isolation_level=isolation)


async def create_topics(cfg: ChaosConfig) -> None:
    from grey.transport import TopicSpec

    admin = open_transport(cfg.broker).admin(_settings("chaos-admin"))
    await admin.start()
    try:
        await admin.create_topics([TopicSpec(f"{cfg.run}-{name}", partitions=cfg.partitions)
                                   for name in ("events", "enriched")])
    finally:
        await admin.stop()


async def produce(cfg: ChaosConfig, events: Sequence[tuple[int, str, int]]) -> None:
    """Send the workload evenly over ``cfg.duration`` seconds."""
    producer = open_transport(cfg.broker).producer(_settings("chaos-producer"))
    await producer.start()
    try:
        topic = f"{cfg.run}-events"
        started = time.monotonic()
        step = 500
        for first in range(0, len(events), step):
            for i, user, amount in events[first:first + step]:
                value = json.dumps({"id": i, "user": user, "amount": amount}).encode()
                await producer.send(topic, value, key=user.encode())
            due = started + cfg.duration * (first + step) / len(events)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()


async def caught_up(cfg: ChaosConfig) -> bool:
    """Whether the app's committed offsets reached the end of the events topic."""
    consumer = open_transport(cfg.broker).consumer(_settings(f"{cfg.run}-app"))
    await consumer.start()
    try:
        tps = [TP(f"{cfg.run}-events", p) for p in range(cfg.partitions)]
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if await consumer.committed(tp) != ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def read_topic(broker: str, topic: str, partitions: int) -> list[tuple[bytes | None, bytes | None]]:
    """Every committed (key, value) of a topic, read from the start to its end."""
    consumer: Consumer = open_transport(broker).consumer(_settings())
    await consumer.start()
    try:
        tps = [TP(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, begins[tp])
        found: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=None)
            for messages in batch.values():
                found.extend((m.key, m.value) for m in messages)
        return found
    finally:
        await consumer.stop()


async def read_table(cfg: ChaosConfig) -> dict[str, int]:
    """The totals table as its changelog holds it: the latest committed value per user."""
    table: dict[str, int] = {}
    for key, value in await read_topic(cfg.broker, f"{cfg.run}-app-totals-changelog", cfg.partitions):
        user = (key or b"").decode()  # the table is keyed by str: plain UTF-8
        if value is None:
            table.pop(user, None)
        else:
            table[user] = json.loads(value)
    return table


async def read_redis(cfg: ChaosConfig, users: Sequence[str]) -> dict[str, int]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(cfg.redis)
    try:
        raw = await client.mget([f"chaos:{cfg.run}:{user}" for user in users])
    finally:
        await client.aclose()
    return {user: json.loads(value)["total"] for user, value in zip(users, raw, strict=True) if value is not None}


# -- the run -----------------------------------------------------------------


async def check(cfg: ChaosConfig, events: Sequence[tuple[int, str, int]], report: ChaosReport) -> None:
    """Fill the report's counts from what the topics, the table and Redis hold now."""
    outputs = await read_topic(cfg.broker, f"{cfg.run}-enriched", cfg.partitions)
    seen = Counter(json.loads(value or b"null")["id"] for _, value in outputs)
    report.outputs = len(outputs)
    report.duplicates = sum(count - 1 for count in seen.values() if count > 1)
    report.lost = sum(1 for i, _, _ in events if i not in seen)
    expected = expected_totals(events)
    table = await read_table(cfg)
    redis = await read_redis(cfg, sorted(expected))
    for name, found in (("table", table), ("redis", redis)):
        wrong = [user for user, total in expected.items() if found.get(user) != total]
        setattr(report, f"{name}_mismatch", len(wrong))
        report.examples += [f"{name} {user}: expected {expected[user]}, found {found.get(user)}" for user in wrong[:3]]
    report.examples += [f"id {i} came {n} times" for i, n in seen.most_common(3) if n > 1]


async def settle(cfg: ChaosConfig, pool: WorkerPool, report: ChaosReport, log: Any = print) -> None:
    """Let every worker run until the app committed the whole workload, then stop them all."""
    try:
        for slot in range(cfg.workers):  # a worker that died by itself is a finding, but keep going
            if slot not in pool.alive():
                log(f"  worker {slot} was not running at the end of the workload; starting it")
                pool.start(slot)
        deadline = time.monotonic() + cfg.settle_timeout
        while not (done := await caught_up(cfg)) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(1.0)
        report.caught_up = done
        if not done:
            log(f"  the workers did not catch up within {cfg.settle_timeout:.0f}s")
    finally:
        codes = pool.stop_all()
    if any(code not in (0, -signal.SIGTERM) for code in codes.values()):
        log(f"  worker exit codes: {codes}")


async def run(cfg: ChaosConfig, log: Any = print) -> ChaosReport:
    started = time.monotonic()
    events = workload(cfg)
    report = ChaosReport(events=len(events))
    work_dir = cfg.work_dir or Path(tempfile.mkdtemp(prefix=f"{cfg.run}-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    await create_topics(cfg)
    pool = WorkerPool(cfg, work_dir)
    rng = random.Random(cfg.seed + 1)
    log(f"chaos run {cfg.run}: {len(events)} events over {cfg.duration:.0f}s, {cfg.workers} workers, "
        f"{cfg.guarantee}, logs in {work_dir}")
    try:
        for slot in range(cfg.workers):
            pool.start(slot)
        producing = asyncio.get_running_loop().create_task(produce(cfg, events))
        while not producing.done():
            if cfg.kill_every <= 0:
                await asyncio.wait([producing])
                break
            await asyncio.wait([producing], timeout=rng.uniform(0.5, 1.5) * cfg.kill_every)
            if producing.done():
                break
            victims = pool.alive()
            if victims:
                slot = rng.choice(victims)
                pool.kill(slot)
                report.kills += 1
                log(f"  t={time.monotonic() - started:5.1f}s SIGKILL worker {slot} (kill {report.kills})")
                await asyncio.sleep(cfg.restart_after)
                pool.start(slot)
        await producing
    finally:
        await settle(cfg, pool, report, log)
    await check(cfg, events, report)
    report.seconds = time.monotonic() - started
    log(f"  outputs={report.outputs} kills={report.kills} caught_up={report.caught_up} "
        f"in {report.seconds:.0f}s")
    for example in report.examples:
        log(f"  {example}")
    return report


def parse(argv: Sequence[str] | None = None) -> ChaosConfig:
    parser = argparse.ArgumentParser(prog="chaos-eos", description=__doc__.split("\n\n")[0])
    defaults = ChaosConfig()
    parser.add_argument("--events", type=int, default=defaults.events)
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--duration", type=float, default=defaults.duration,
                        help="seconds over which the events are produced (kills happen meanwhile)")
    parser.add_argument("--kill-every", type=float, default=defaults.kill_every)
    parser.add_argument("--restart-after", type=float, default=defaults.restart_after)
    parser.add_argument("--guarantee", choices=["exactly_once", "at_least_once"], default=defaults.guarantee)
    parser.add_argument("--commit-interval", type=float, default=defaults.commit_interval)
    port = os.environ.get("GREY_KAFKA_PORT", "9092")
    parser.add_argument("--broker", default=os.environ.get("GREY_BROKER", f"kafka://127.0.0.1:{port}"))
    parser.add_argument("--redis", default=f"redis://127.0.0.1:{os.environ.get('GREY_REDIS_PORT', '6379')}/0")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    return ChaosConfig(
        events=args.events, partitions=args.partitions, workers=args.workers, users=args.users,
        duration=args.duration, kill_every=args.kill_every, restart_after=args.restart_after,
        guarantee=args.guarantee, commit_interval=args.commit_interval, broker=args.broker, redis=args.redis,
        seed=args.seed, work_dir=args.work_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    report = asyncio.run(run(parse(argv)))
    print(report.line(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())

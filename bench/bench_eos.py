"""The cost of exactly-once: the same workloads under at_least_once and exactly_once.

    .venv/bin/python bench/bench_eos.py --events 1000000

Every run of grey is a subprocess (``--run-one JOB``) with a fresh app id (so a fresh group),
output topic or changelog, and data_dir. Two phases:

* **throughput**: bench_runtime's click events (``--sizes``, ~500 B and ~1 KB, 8 partitions,
  produced once per size to ``bench-clicks-{N}-{size}-{partitions}``) through two workloads,

  - ``enrich``: consume -> enrich -> produce, per event (``async for click in stream:
    await enriched.send(Enriched(...), key=click.user_id)``), to a fresh output topic;
  - ``windowed``: bench_tables' 1-minute tumbling windows (count, sum, avg per user and
    event type) in a rocksdb table, per batch;

  under each guarantee and commit interval (``--intervals``, 100 ms and 1 s). Each guarantee
  keeps its own checkpoint_interval default (1,000 events under at_least_once; time only under
  exactly_once). *events/s* is N over the time from the first event the agent sees until the
  group's committed offsets reach the end of every partition (under exactly_once: until the last
  transaction committed); *processed/s* stops at the last event processed instead, which leaves
  out the wait for the last commit (up to a commit interval, plus the commit: it weighs more in a
  short run). The table gives exactly-once's cost on both. Afterwards the output (the enriched
  topic read with read_committed, or the table's windows) must hold every event once, with the
  exact checksum of bench_runtime.
* **latency** (enrich only): the driver produces ``--rate`` events/s for ``--latency-seconds``
  to a fresh topic, each carrying its produce time in ``timestamp``, while a read_committed
  consumer reads the output; latency is receive time minus produce time, without the first
  second (warm-up).

Targets (the issue): exactly-once costs <= 10% of throughput at a 1 s commit interval, and its
end-to-end p99 latency is <= 3x the commit interval.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from bench_runtime import (  # the runtime benchmark's data set and reporting
    FETCH_MAX_BYTES,
    PAGES,
    ROOT,
    Click,
    Tally,
    _admin,
    delete_topics,
    expected_total,
    log,
    peak_rss_kb,
    prepare_topic,
    produce_at_rate,
    write_report,
)
from bench_tables import Result, TablesJob, summarize, totals_table

import grey
from grey.runtime.runtime import Runtime
from grey.transport import TopicSpec
from grey.transport.kafka import bootstrap_servers
from grey.worker import tune_gc

PLOT = ROOT / "docs" / "img" / "bench-eos.png"
QUICK = ROOT / ".cache" / "bench-quick"
GUARANTEES = ("at_least_once", "exactly_once")
WORKLOADS = ("enrich", "windowed")
ALO, EOS = GUARANTEES
SECTIONS = {page: page.split("/")[1] or "home" for page in PAGES}
WARMUP = 1.0  # seconds of the latency phase left out
COST_TARGET = 0.10  # exactly-once may cost this share of throughput at a 1 s commit interval
LATENCY_TARGET = 3.0  # p99 within this many commit intervals


class Enriched(grey.Record):
    """What the enrich workload produces: the click, a few derived fields, and the same pad."""

    user_id: str
    event_type: str
    amount: float
    cents: int
    purchase: bool
    section: str
    timestamp: float
    pad: str


class Received(msgspec.Struct):
    amount: float
    timestamp: float


@dataclass(frozen=True, slots=True)
class EosJob(TablesJob):
    workload: str
    guarantee: str
    commit_interval: float
    output: str = ""  # the enrich workload's output topic
    verify: bool = True  # read the output back (the latency phase's driver reads it itself)


# -- the workloads (in the --run-one subprocess) ---------------------------------------------------

def make_app(job: EosJob) -> grey.App:
    return grey.App(job.app_id, broker=job.broker, processing_guarantee=job.guarantee,
                    commit_interval=job.commit_interval, data_dir=job.data_dir)


async def run_enrich(job: EosJob) -> Result:
    app = make_app(job)
    source = app.topic(job.topic, key_type=str, value_type=Click, partitions=job.partitions)
    enriched = app.topic(job.output, key_type=str, value_type=Enriched, partitions=job.partitions)
    tally, done = Tally(), asyncio.Event()

    @app.agent(source, name="enrich")
    async def enrich(stream: grey.Stream) -> None:
        async for click in stream:
            if not tally.count:
                tally.start()
            await enriched.send(Enriched(
                user_id=click.user_id, event_type=click.event_type, amount=click.amount,
                cents=int(click.amount * 100), purchase=click.event_type == "purchase",
                section=SECTIONS[click.page], timestamp=click.timestamp, pad=click.pad), key=click.user_id)
            tally.total += click.amount
            tally.count += 1
            if tally.count == job.events:
                tally.stop()
                done.set()

    result = await measure(app, job, tally, done)
    if job.verify:
        count, total = await read_output(job.broker, job.output, job.partitions, job.events, job.timeout)
        check(job, count, total)
        result["output_records"] = count
    return result


async def run_windowed(job: EosJob) -> Result:
    app = make_app(job)
    source = app.topic(job.topic, key_type=str, value_type=Click, partitions=job.partitions)
    totals = totals_table(app, "rocksdb://")
    tally, done = Tally(), asyncio.Event()

    def user_and_type(click: Click) -> tuple[str, str]:
        return click.user_id, click.event_type

    @app.agent(source, name="windowed")
    async def windowed(stream: grey.Stream) -> None:
        async for batch in stream.batches(max=1000):
            if not tally.count:
                tally.start()
            totals.update_many(batch, key=user_and_type)
            tally.count += len(batch)
            if tally.count >= job.events and not done.is_set():
                tally.stop()
                done.set()

    async def windows() -> Result:
        await asyncio.sleep(0.5)  # a tick or two: the windows due at the final stream time close
        windows, count, amount = 0, 0, 0.0
        for _, results in totals.items():  # every event is in exactly one tumbling window
            windows, count, amount = windows + 1, count + results["count"], amount + results["amount"]
        check(job, count, amount)
        return {"output_records": count, "windows": windows, "closed_windows": totals.closed_windows}

    return await measure(app, job, tally, done, windows)


def check(job: EosJob, count: int, total: float) -> None:
    if count != job.events or total != expected_total(job.events):
        raise SystemExit(f"{job.workload} {job.guarantee}: WRONG RESULT: the output holds {count:,} events summing "
                         f"to {total!r}, expected {job.events:,} summing to {expected_total(job.events)!r}")


async def until(ready: Callable[[], bool], runtime: Runtime, timeout: float, what: str, every: float) -> None:
    """Poll ``ready`` until it holds; fail if the app crashed or ``timeout`` passed."""
    assert runtime.crashed is not None
    deadline = time.monotonic() + timeout
    while not ready():
        if runtime.crashed.done():
            raise RuntimeError(f"the grey app crashed waiting for {what}") from runtime.crashed.exception()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s ({runtime.processed:,} events processed)")
        await asyncio.sleep(every)


async def input_ends(job: EosJob) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(job.broker))
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(
            [TopicPartition(job.topic, p) for p in range(job.partitions)])
        return ends
    finally:
        await consumer.stop()


async def measure(app: grey.App, job: EosJob, tally: Tally, done: asyncio.Event,
                  after: Callable[[], Awaitable[Result]] | None = None) -> Result:
    """Run the app until its agent saw every event and the group committed them; ``after`` then checks."""
    running = app.running()
    runtime = await running.__aenter__()
    tune_gc()  # what `grey worker` does after start
    stop_hung = False
    try:
        await until(lambda: len(runtime.partitions) == job.partitions and not runtime.recovering,
                    runtime, 120, "the partition assignment", 0.01)
        print("READY", flush=True)  # the latency driver starts producing now
        await until(done.is_set, runtime, job.timeout, f"{job.events:,} events", 0.05)
        ends = await input_ends(job)  # every event was read: these are the final ends

        def committed() -> bool:
            return all((s := runtime.partitions.get(tp)) is not None and s.committed == end
                       for tp, end in ends.items())

        await until(committed, runtime, job.timeout, "the commit of the last events", 0.002)
        committed_at, cpu = time.perf_counter(), time.process_time()
        rss = peak_rss_kb()
        transactions = runtime.transactions.committed if runtime.transactions is not None else 0
        extra = await after() if after is not None else {}
    finally:
        try:
            async with asyncio.timeout(15):
                await running.__aexit__(None, None, None)
        except TimeoutError:
            stop_hung = True
            log("WARNING: grey's Runtime.stop() did not return within 15 s")
    seconds = committed_at - tally.first
    return {"events": tally.count, "seconds": round(seconds, 4), "events_per_s": round(tally.count / seconds, 1),
            "processed_events_per_s": round(tally.count / (tally.last - tally.first), 1),
            "commit_wait_s": round(committed_at - tally.last, 4), "cpu_s": round(cpu - tally.cpu_first, 3),
            "peak_rss_mb": round(rss / 1024, 1), "transactions": transactions, "stop_hung": int(stop_hung), **extra}


RUNNERS = {"enrich": run_enrich, "windowed": run_windowed}


# -- reading the output, producing at a rate (in the driver) ---------------------------------------

async def read_output(broker: str, topic: str, partitions: int, n: int, timeout: float,
                      seen: list[tuple[float, float]] | None = None,
                      started: asyncio.Event | None = None) -> tuple[int, float]:
    """Read ``topic`` with read_committed from the start until n records (and any repeats) are in.

    Returns the count and the sum of amounts; appends (produce time, latency in s) of each record to ``seen``.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(broker), isolation_level="read_committed",
                                enable_auto_commit=False, fetch_max_bytes=FETCH_MAX_BYTES)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    decode = msgspec.json.Decoder(Received).decode
    count, total = 0, 0.0
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        if started is not None:
            started.set()
        deadline, settle = time.monotonic() + timeout, 0.0
        while time.monotonic() < deadline:
            found = await consumer.getmany(timeout_ms=100, max_records=2000)
            now = time.time()
            for messages in found.values():
                for message in messages:
                    record = decode(message.value)
                    count, total = count + 1, total + record.amount
                    if seen is not None:
                        seen.append((record.timestamp, now - record.timestamp))
            if count >= n:  # all in: read on to the end (a second at most) to count repeats too
                settle = settle or time.monotonic() + 1.0
                ends = await consumer.end_offsets(tps)
                if all([await consumer.position(tp) >= ends[tp] for tp in tps]) or time.monotonic() > settle:
                    break
    finally:
        await consumer.stop()
    return count, total


def command(job: EosJob) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--run-one", msgspec.json.encode(job).decode()]


def spawn(job: EosJob) -> Result:
    proc = subprocess.run(command(job), stdout=subprocess.PIPE, text=True, timeout=job.timeout + 180, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{job.workload} {job.guarantee} failed (exit {proc.returncode}); see its stderr above")
    result: Result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


async def latency_run(job: EosJob, rate: float, size: int) -> Result:
    """One latency run: the app in a subprocess, the producer and the read_committed reader here."""
    admin = _admin(job.broker)
    await admin.start()
    try:
        await admin.create_topics([TopicSpec(t, partitions=job.partitions) for t in (job.topic, job.output)])
    finally:
        await admin.stop()
    proc = await asyncio.create_subprocess_exec(*command(job), stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(150):
            while (line := await proc.stdout.readline()) and line.strip() != b"READY":
                pass
        if proc.returncode is not None or not line:
            raise SystemExit(f"latency {job.guarantee}: the app exited before it was ready; see its stderr above")
        started, seen = asyncio.Event(), list[tuple[float, float]]()
        reader = asyncio.create_task(read_output(job.broker, job.output, job.partitions, job.events,
                                                 job.timeout, seen, started))
        await started.wait()
        since = time.time() + WARMUP
        await produce_at_rate(job.broker, job.topic, job.events, rate, size)
        count, total = await reader
        out, _ = await asyncio.wait_for(proc.communicate(), job.timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await delete_topics(job.broker, [job.topic, job.output])
    if proc.returncode != 0:
        raise SystemExit(f"latency {job.guarantee} failed (exit {proc.returncode}); see its stderr above")
    app: Result = json.loads(out.decode().strip().splitlines()[-1])
    ms = sorted(latency * 1000 for produced, latency in seen if produced >= since)
    if len(ms) < 2:
        raise SystemExit(f"latency {job.guarantee}: {len(ms)} events after the warm-up; raise --latency-seconds")
    log(f"  {job.guarantee} {job.commit_interval:g}s: {count:,} of {job.events:,} events back "
        f"(sum {'ok' if total == expected_total(job.events) else 'WRONG'})")
    return {"events": count, "measured": len(ms), "p50_ms": round(statistics.median(ms), 1),
            "p99_ms": round(statistics.quantiles(ms, n=100)[98], 1), "max_ms": round(ms[-1], 1),
            "sum_ok": int(total == expected_total(job.events)), "transactions": app["transactions"],
            "cpu_s": app["cpu_s"], "peak_rss_mb": app["peak_rss_mb"], "stop_hung": app["stop_hung"]}


# -- the plan ------------------------------------------------------------------------------------

def row_name(workload: str, size: int, interval: float, guarantee: str) -> str:
    return f"{workload} {size}B {interval * 1000:.0f}ms {guarantee}"


def throughput_round(args: argparse.Namespace, topics: dict[int, str], scratch: Path,
                     runs: dict[str, list[Result]]) -> None:
    for size, topic in topics.items():
        for workload in args.workloads:
            for interval in args.intervals:
                for guarantee in GUARANTEES:
                    run = uuid.uuid4().hex[:8]
                    job = EosJob(args.broker, topic, args.events, args.partitions, args.timeout, f"bench-eos-{run}",
                                 tempfile.mkdtemp(dir=scratch), workload, guarantee, interval,
                                 output=f"bench-eos-{run}-enriched" if workload == "enrich" else "")
                    try:
                        result = spawn(job)
                    finally:  # a million output or changelog records per run: do not let them pile up
                        asyncio.run(delete_topics(args.broker, [job.output or f"{job.app_id}-totals-changelog"]))
                    name = row_name(workload, size, interval, guarantee)
                    runs.setdefault(name, []).append(result)
                    log(f"  {name}: {result['events_per_s']:,.0f} events/s to committed "
                        f"({result['processed_events_per_s']:,.0f} processed), CPU {result['cpu_s']:.2f}s, "
                        f"RSS {result['peak_rss_mb']:.0f} MB, {result['transactions']} transactions")


def latency_round(args: argparse.Namespace, scratch: Path, runs: dict[str, list[Result]]) -> None:
    n = int(args.rate * args.latency_seconds)
    for interval in args.intervals:
        for guarantee in GUARANTEES:
            run = uuid.uuid4().hex[:8]
            job = EosJob(args.broker, f"bench-eos-lat-{run}", n, args.partitions, args.latency_seconds + 120,
                         f"bench-eos-{run}", tempfile.mkdtemp(dir=scratch), "enrich", guarantee, interval,
                         output=f"bench-eos-lat-{run}-enriched", verify=False)
            result = asyncio.run(latency_run(job, args.rate, args.sizes[0]))
            name = row_name("enrich", args.sizes[0], interval, guarantee)
            runs.setdefault(name, []).append(result)
            log(f"  latency {name}: p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
                f"max {result['max_ms']:.0f} ms")


# -- reporting ------------------------------------------------------------------------------------------

def describe(summary: dict[str, Result]) -> None:
    """Add each row's coordinates and, to every exactly-once row, its cost against at-least-once."""
    for name, row in summary.items():
        workload, size, interval, guarantee = name.split()
        row.update(workload=workload, size=int(size[:-1]), interval_s=float(interval[:-2]) / 1000,
                   guarantee=guarantee)
        base = summary.get(name.replace(EOS, ALO)) if guarantee == EOS else None
        if base is not None and "events_per_s" in row:
            row["eos_cost"] = round(1 - row["events_per_s"] / base["events_per_s"], 4)
            row["eos_cost_processed"] = round(1 - row["processed_events_per_s"] / base["processed_events_per_s"], 4)
            if row["interval_s"] == 1.0:
                row["target_met"] = row["eos_cost"] <= COST_TARGET
        if "p99_ms" in row:
            row["p99_intervals"] = round(row["p99_ms"] / 1000 / row["interval_s"], 2)
            if guarantee == EOS:
                row["target_met"] = row["p99_intervals"] <= LATENCY_TARGET


def verdict(row: Result) -> str:
    return "" if "target_met" not in row else " ✓" if row["target_met"] else " ✗"


def throughput_table(summary: dict[str, Result]) -> str:
    lines = ["| workload | size | guarantee | commit interval | events/s | EOS cost | processed/s "
             "| EOS cost (processed) | CPU s | RSS MB | transactions |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary.values():
        cost = f"{r['eos_cost']:.1%}{verdict(r)}" if "eos_cost" in r else "-"
        cost_processed = f"{r['eos_cost_processed']:.1%}" if "eos_cost" in r else "-"
        lines.append(f"| {r['workload']} | {r['size']} B | {r['guarantee']} | {r['interval_s'] * 1000:.0f} ms "
                     f"| {r['events_per_s']:,.0f} | {cost} | {r['processed_events_per_s']:,.0f} | {cost_processed} "
                     f"| {r['cpu_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['transactions']:,.0f} |")
    return "\n".join(lines)


def latency_table(summary: dict[str, Result]) -> str:
    lines = ["| guarantee | commit interval | p50 ms | p99 ms | max ms | p99 / interval | events |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary.values():
        lines.append(f"| {r['guarantee']} | {r['interval_s'] * 1000:.0f} ms | {r['p50_ms']:,.1f} | {r['p99_ms']:,.1f} "
                     f"| {r['max_ms']:,.1f} | {r['p99_intervals']:.2f}x{verdict(r)} | {r['measured']:,.0f} |")
    return "\n".join(lines)


def plot(summary: dict[str, Result], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [(r, summary[n.replace(ALO, EOS)]) for n, r in summary.items()
             if r["guarantee"] == ALO and n.replace(ALO, EOS) in summary]
    if not pairs:
        return
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(pairs) + 2), 4.2))
    width = 0.38
    for offset, side, colour, label in ((-width / 2, 0, "#888888", ALO), (width / 2, 1, "#3b7dd8", EOS)):
        rates = [pair[side]["events_per_s"] / 1000 for pair in pairs]
        bars = ax.bar([i + offset for i in range(len(pairs))], rates, width, color=colour, label=label)
        for bar, pair in zip(bars, pairs, strict=True):
            note = f"{bar.get_height():.0f}k" + (f"\n{-pair[1]['eos_cost']:+.0%}" if side else "")
            ax.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(pairs)), [f"{a['workload']}\n{a['size']} B, {a['interval_s'] * 1000:.0f} ms"
                                      for a, _ in pairs], fontsize=8)
    ax.set_ylabel("thousand events/s to committed (median)")
    ax.set_ylim(0, max(max(a["events_per_s"], b["events_per_s"]) for a, b in pairs) / 1000 * 1.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def numbers(text: str, kind: type[float] | type[int]) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, help="events per throughput run (default 1,000,000; --quick 100,000)")
    p.add_argument("--sizes", help="comma-separated value sizes in bytes (default 500,1000; --quick 500)")
    p.add_argument("--intervals", default="0.1,1.0", help="comma-separated commit intervals in seconds")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated: " + ", ".join(WORKLOADS))
    p.add_argument("--phases", default="throughput,latency", help="comma-separated: throughput, latency")
    p.add_argument("--rate", type=float, default=5000.0, help="events/s produced in the latency phase")
    p.add_argument("--latency-seconds", type=float, help="how long the latency phase produces (default 12; --quick 6)")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--broker", default=os.environ.get("GREY_BROKER", "kafka://127.0.0.1:9092"))
    p.add_argument("--repeat", type=int, default=1, help="runs of each; the tables show the medians")
    p.add_argument("--quick", action="store_true", help="a smoke test: 100,000 events of 500 B, results in "
                                                        ".cache/bench-quick/")
    p.add_argument("--out", type=Path, help="where the JSON goes (default bench/results)")
    p.add_argument("--plot", type=Path, help="where the chart goes (default docs/img/bench-eos.png)")
    p.add_argument("--timeout", type=float, default=0.0, help="seconds per run (default: scales with --events)")
    p.add_argument("--run-one", metavar="JOB", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_one:
        return args
    args.events = args.events or (100_000 if args.quick else 1_000_000)
    args.sizes = numbers(args.sizes or ("500" if args.quick else "500,1000"), int)
    args.size = args.sizes  # write_report's name for it
    args.intervals = numbers(args.intervals, float)
    args.latency_seconds = args.latency_seconds or (6.0 if args.quick else 12.0)
    args.out = args.out or (QUICK if args.quick else ROOT / "bench" / "results")
    args.plot = args.plot or (QUICK / "bench-eos.png" if args.quick else PLOT)
    args.timeout = args.timeout or max(120.0, args.events / 2_000)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    args.phases = {w.strip() for w in args.phases.split(",") if w.strip()}
    if unknown := set(args.workloads) - set(WORKLOADS) or args.phases - {"throughput", "latency"}:
        raise SystemExit(f"unknown workload(s) or phase(s): {', '.join(sorted(unknown))}")
    if args.latency_seconds <= WARMUP:
        raise SystemExit(f"--latency-seconds must be more than the {WARMUP:g} s warm-up")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.run_one:
        job = msgspec.json.decode(args.run_one, type=EosJob)
        print(json.dumps(asyncio.run(RUNNERS[job.workload](job))), flush=True)
        return
    topics: dict[int, str] = {}
    if "throughput" in args.phases:
        for size in args.sizes:
            topics[size] = asyncio.run(prepare_topic(args.broker, args.events, size, args.partitions))
    throughput: dict[str, list[Result]] = {}
    latency: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-eos-") as scratch:
        for rep in range(args.repeat):  # interleaved, so drift on the machine hits every row alike
            log(f"[{rep + 1}/{args.repeat}]")
            if "throughput" in args.phases:
                throughput_round(args, topics, Path(scratch), throughput)
            if "latency" in args.phases:
                latency_round(args, Path(scratch), latency)
    summary = {"throughput": summarize(throughput), "latency": summarize(latency)}
    for part in summary.values():
        describe(part)
    params = {"commit_intervals_s": args.intervals, "workloads": args.workloads,
              "latency_rate": args.rate, "latency_seconds": args.latency_seconds, "latency_warmup_s": WARMUP,
              "latency_size": args.sizes[0], "checkpoint_interval": "each guarantee's default",
              "windowed_store": "rocksdb://",
              "targets": {"eos_cost_at_1s": COST_TARGET, "p99_intervals": LATENCY_TARGET},
              "timing": "first event to the commit of the last (processed/s: to the last processed)"}
    path, facts = write_report("eos", args, argv, ", ".join(topics.values()), params, summary,
                               {"throughput": throughput, "latency": latency})
    if summary["throughput"]:
        print(throughput_table(summary["throughput"]) + "\n")
        plot(summary["throughput"], f"{args.events:,} events, {args.partitions} partitions, Kafka {facts['kafka']}, "
                                    f"{facts['cores']} cores (median of {args.repeat})", args.plot)
    if summary["latency"]:
        print(f"Latency, enrich, {args.rate:,.0f} events/s of ~{args.sizes[0]} B for {args.latency_seconds:g} s "
              f"(first {WARMUP:g} s left out), read_committed:\n")
        print(latency_table(summary["latency"]) + "\n")
    print(f"command: {json.loads(path.read_text())['command']}")
    log(f"wrote {path}" + (f" and {args.plot}" if summary["throughput"] else ""))


if __name__ == "__main__":
    main()

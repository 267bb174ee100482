"""Throughput of grey's runtime against a hand-written aiokafka consumer, on one shared topic.

    .venv/bin/python bench/bench_runtime.py --events 1000000 --repeat 3

The topic is produced once (and reused while it holds exactly ``--events``
records); then every system reads all of it with a fresh consumer group, one
at a time, each in its own subprocess (``--run-one NAME``) so that CPU time and
peak RSS belong to that system alone. A system is an async runner in
``SYSTEMS``: more (faust, Kafka Streams, ...) are added there.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from peers.contract import EVENT_TYPES, USERS

import grey
from grey.transport import Admin, ClientSettings, TopicError, TopicSpec, open_transport
from grey.transport.kafka import bootstrap_servers
from grey.worker import tune_gc

ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "docs" / "img" / "bench-runtime.png"
PAGES = ("/", "/home", "/search", "/cart", "/checkout", "/product/42", "/account/settings", "/help/faq")
FETCH_MAX_BYTES = 52_428_800  # grey's ClientSettings defaults, so every consumer fetches alike
MAX_POLL_RECORDS = 500
CHECKPOINT = 1000  # grey's default checkpoint_interval: commit every 1000 processed messages


# -- the data set ----------------------------------------------------------------------------

def amount_for(i: int) -> float:
    """A multiple of 0.25, so sums are exact in any order and every system must match to the bit."""
    return ((i * 7919) % 40_000) / 4


def expected_total(n: int) -> float:
    return sum((i * 7919) % 40_000 for i in range(n)) / 4


def _admin(broker: str) -> Admin:
    return open_transport(broker).admin(ClientSettings(group_id="bench-admin"))


async def topic_partitions(broker: str) -> dict[str, int]:
    admin = _admin(broker)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.stop()


async def record_count(broker: str, topic: str, partitions: int) -> int | None:
    """Records in ``topic`` (end minus beginning offsets), or None if it is missing or shaped otherwise."""
    if (await topic_partitions(broker)).get(topic) != partitions:
        return None
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(broker))
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends, begins = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
        return int(sum(ends[tp] - begins[tp] for tp in tps))
    finally:
        await consumer.stop()


async def prepare_topic(broker: str, n: int, size: int, partitions: int) -> str:
    """Make sure ``bench-clicks-{n}-{size}-{partitions}`` holds exactly n click events."""
    topic = f"bench-clicks-{n}-{size}-{partitions}"
    return await fill_topic(broker, topic, n, partitions, lambda: produce(bootstrap_servers(broker), topic, n, size))


async def fill_topic(broker: str, topic: str, n: int, partitions: int,
                     produce_all: Callable[[], Awaitable[None]]) -> str:
    """Reuse ``topic`` if it holds exactly n records; otherwise (re)create it and run ``produce_all``."""
    count = await record_count(broker, topic, partitions)
    if count == n:
        log(f"reusing {topic} ({n:,} records)")
        return topic
    if topic in await topic_partitions(broker):
        log(f"{topic} holds {count} records, not {n:,}: deleting it")
        await delete_topics(broker, [topic])
    admin = _admin(broker)
    await admin.start()
    try:
        for _ in range(60):  # a just-deleted topic may still be "marked for deletion" for a moment
            try:
                await admin.create_topics([TopicSpec(topic, partitions=partitions)])
                break
            except TopicError:
                await asyncio.sleep(1)
    finally:
        await admin.stop()
    await produce_all()
    if (count := await record_count(broker, topic, partitions)) != n:
        raise SystemExit(f"produced {n:,} records but {topic} holds {count}")
    return topic


async def delete_topics(broker: str, topics: list[str]) -> None:
    """Delete those of ``topics`` that exist, and wait until they are gone."""
    existing = await topic_partitions(broker)
    if not (doomed := [t for t in topics if t in existing]):
        return
    raw_admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(broker))
    await raw_admin.start()
    try:
        await raw_admin.delete_topics(doomed)
    finally:
        await raw_admin.close()
    while set(doomed) & set(await topic_partitions(broker)):
        await asyncio.sleep(0.5)


def click_events(n: int, timestamp: Callable[[int, random.Random], float] = lambda i, _: i / 1000
                 ) -> Iterator[dict[str, Any]]:
    """The data set: n click events (without their pad), the same sequence on every call.
    ``timestamp(i, rng)`` gives event i's time; it may draw from ``rng`` (it is called in between)."""
    rng = random.Random(42)
    for i in range(n):
        yield {"user_id": f"u{rng.randrange(USERS)}", "event_type": rng.choice(EVENT_TYPES),
               "amount": amount_for(i), "latency": round(rng.uniform(1, 500), 3), "timestamp": timestamp(i, rng),
               "page": rng.choice(PAGES), "pad": ""}


async def produce(servers: list[str], topic: str, n: int, size: int,
                  timestamp: Callable[[int, random.Random], float] | None = None) -> None:
    """n JSON click events of ~size bytes, keyed by user id; no compression (the pad would vanish in lz4).
    Event times are now + i ms unless ``timestamp`` says otherwise (see click_events)."""
    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=20, max_batch_size=256 * 1024,
                                compression_type=None)
    encode = msgspec.json.Encoder().encode
    start, now = time.perf_counter(), time.time()
    await producer.start()
    try:
        for i, event in enumerate(click_events(n, timestamp or (lambda i, _: now + i / 1000))):
            event["pad"] = "x" * max(0, size - len(encode(event)))
            await producer.send(topic, encode(event), key=event["user_id"].encode())  # not awaited
            if i and not i % 100_000:
                log(f"  produced {i:,}")
        await producer.flush()
    finally:
        await producer.stop()
    log(f"produced {n:,} events to {topic} in {time.perf_counter() - start:.1f}s")


async def produce_at_rate(broker: str, topic: str, n: int, rate: float, size: int) -> None:
    """n click events at ``rate`` per second (no linger, no compression), each with the wall-clock
    time it is sent as its ``timestamp``: what the latency measurements feed their systems."""
    encode = msgspec.json.Encoder().encode
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(broker), linger_ms=0, compression_type=None)
    await producer.start()
    try:
        start = time.monotonic()
        for i, event in enumerate(click_events(n)):
            ahead = start + i / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            event["timestamp"] = time.time()
            event["pad"] = "x" * max(0, size - len(encode(event)))
            await producer.send(topic, encode(event), key=event["user_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


def peak_rss_kb(pid: int | str = "self") -> int:
    """A process's own high-water RSS (VmHWM), 0 if it is gone. Not ``ru_maxrss``: a process started by
    fork/vfork and exec keeps its parent's RSS at exec time as a floor there."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


# -- the systems ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Job:
    broker: str
    topic: str
    events: int
    partitions: int
    timeout: float


@dataclass(slots=True)
class Tally:
    """What a runner reports: the window from the first event to the last, and the checksum."""

    count: int = 0
    total: float = 0.0
    first: float = 0.0
    last: float = 0.0
    cpu_first: float = 0.0
    cpu_last: float = 0.0
    stop_hung: bool = False

    def start(self) -> None:
        self.first, self.cpu_first = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        self.last, self.cpu_last = time.perf_counter(), time.process_time()


class Click(grey.Record):
    """A msgspec.Struct: grey decodes into it with msgspec.json.Decoder(Click), and so does raw-aiokafka."""

    user_id: str
    event_type: str
    amount: float
    latency: float
    timestamp: float
    page: str
    pad: str


def raw_runner(gc_tuning: bool) -> Callable[[Job], Coroutine[Any, Any, Tally]]:
    """The hand-written loop with Python's GC defaults, or with the GC settings `grey worker` applies."""

    async def run(job: Job) -> Tally:
        if gc_tuning:
            tune_gc()
        return await run_raw_aiokafka(job)

    return run


async def run_raw_aiokafka(job: Job) -> Tally:
    """getmany + msgspec decode; commits every CHECKPOINT messages, one commit in flight, like grey's committer."""
    consumer = AIOKafkaConsumer(
        job.topic, bootstrap_servers=bootstrap_servers(job.broker), group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=MAX_POLL_RECORDS,
        fetch_max_bytes=FETCH_MAX_BYTES,
    )
    decode = msgspec.json.Decoder(Click).decode
    tally = Tally()
    positions: dict[TopicPartition, int] = {}
    committing: asyncio.Task[None] | None = None
    since_commit = 0
    await consumer.start()
    try:
        deadline = time.monotonic() + job.timeout
        while tally.count < job.events:
            found = await consumer.getmany(timeout_ms=500, max_records=MAX_POLL_RECORDS)
            if not tally.first and found:
                tally.start()
            for tp, messages in found.items():
                total = 0.0
                for message in messages:
                    total += decode(message.value).amount
                tally.total += total
                tally.count += len(messages)
                since_commit += len(messages)
                positions[tp] = messages[-1].offset + 1
            if since_commit >= CHECKPOINT and (committing is None or committing.done()):
                since_commit = 0
                committing = asyncio.create_task(consumer.commit(dict(positions)))
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw-aiokafka: {tally.count:,} of {job.events:,} events in {job.timeout}s")
        tally.stop()
        if committing is not None:
            await committing
        await consumer.commit(dict(positions))
    finally:
        await consumer.stop()
    return tally


def grey_runner(per_event: bool) -> Callable[[Job], Coroutine[Any, Any, Tally]]:
    """A runner for a grey app whose one agent sums the amounts, per event or per batch."""

    async def run(job: Job) -> Tally:
        app = grey.App(f"bench-grey-{uuid.uuid4().hex[:8]}", broker=job.broker, checkpoint_interval=CHECKPOINT)
        topic = app.topic(job.topic, key_type=str, value_type=Click, partitions=job.partitions)
        tally, done, n = Tally(), asyncio.Event(), job.events

        if per_event:
            @app.agent(topic, name="sum-events")
            async def sum_events(stream: grey.Stream) -> None:
                async for click in stream:
                    if not tally.count:
                        tally.start()
                    tally.total += click.amount
                    tally.count += 1
                    if tally.count == n:
                        tally.stop()
                        done.set()
        else:
            @app.agent(topic, name="sum-batches")
            async def sum_batches(stream: grey.Stream) -> None:
                async for batch in stream.batches(max=1000):
                    if not tally.count:
                        tally.start()
                    total = 0.0
                    for click in batch:
                        total += click.amount
                    tally.total += total
                    tally.count += len(batch)
                    if tally.count == n:
                        tally.stop()
                        done.set()

        # Not ``async with``: the measurement is complete before stop(); a stop that takes over 15 s
        # (a bug: it once hung on Python 3.11's wait_for) is reported in the results, not waited for.
        running = app.running()
        runtime = await running.__aenter__()
        tune_gc()  # what `grey worker` does after start (gc_tuning=True, the default)
        try:
            assert runtime.crashed is not None
            waiter: asyncio.Future[Any] = asyncio.ensure_future(done.wait())
            await asyncio.wait([waiter, runtime.crashed], timeout=job.timeout, return_when=asyncio.FIRST_COMPLETED)
            if runtime.crashed.done():
                raise RuntimeError("the grey app crashed") from runtime.crashed.exception()
            if not waiter.done():
                waiter.cancel()
                raise TimeoutError(f"grey: {tally.count:,} of {n:,} events in {job.timeout}s")
        finally:
            try:
                await asyncio.wait_for(running.__aexit__(None, None, None), 15)
            except TimeoutError:
                tally.stop_hung = True
                log("WARNING: grey's Runtime.stop() did not return within 15 s")
        return tally

    return run


SYSTEMS: dict[str, Callable[[Job], Coroutine[Any, Any, Tally]]] = {
    "raw-aiokafka": raw_runner(gc_tuning=False),
    "raw-aiokafka+gc": raw_runner(gc_tuning=True),
    "grey-batch": grey_runner(per_event=False),
    "grey-event": grey_runner(per_event=True),
}
BASELINE = "raw-aiokafka"


def run_one(name: str, job: Job, profile: str | None) -> dict[str, Any]:
    """Run one system in this process and check its work; the parent reads the returned dict as JSON."""
    runner = SYSTEMS[name]
    if profile:
        from pyinstrument import Profiler

        with Profiler(interval=0.0005, async_mode="disabled") as profiler:
            tally = asyncio.run(runner(job))
        Path(profile).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    else:
        tally = asyncio.run(runner(job))
    expected = expected_total(job.events)
    if tally.count != job.events or tally.total != expected:
        raise SystemExit(f"{name}: WRONG RESULT: {tally.count:,} events summing to {tally.total!r}, "
                         f"expected {job.events:,} summing to {expected!r}")
    seconds = tally.last - tally.first
    return {"system": name, "events": tally.count, "seconds": round(seconds, 4),
            "events_per_s": round(tally.count / seconds, 1), "cpu_s": round(tally.cpu_last - tally.cpu_first, 3),
            "peak_rss_mb": round(peak_rss_kb() / 1024, 1),
            "stop_hung": tally.stop_hung}


def spawn(name: str, job: Job) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-one", name, "--topic", job.topic,
           "--events", str(job.events), "--partitions", str(job.partitions), "--broker", job.broker]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=job.timeout + 120, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}); see its stderr above")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- reporting ------------------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    kafka = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    return {
        "cores": os.cpu_count(),
        "cpu": model.group(1).strip() if model else platform.processor(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": kafka.group(1) if kafka else "unknown",
        "aiokafka": importlib.metadata.version("aiokafka"),
        "msgspec": importlib.metadata.version("msgspec"),
        "grey": grey.__version__,
        "grey_commit": _git("rev-parse", "--short", "HEAD") + (" + edits" if _git("status", "-s", "grey") else ""),
    }


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def write_report(kind: str, args: argparse.Namespace, argv: list[str] | None, topic: str,
                 params: dict[str, Any], summary: Any, runs: Any) -> tuple[Path, dict[str, Any]]:
    """Write ``<out>/<date>-<kind>.json`` (command, machine facts, parameters, medians, every run)."""
    command = f"python bench/bench_{kind}.py " + " ".join(argv if argv is not None else sys.argv[1:])
    facts = machine()
    report = {"date": dt.date.today().isoformat(), "command": command.strip(), "machine": facts,
              "params": {"events": args.events, "partitions": args.partitions, "size": args.size,
                         "repeat": args.repeat, "topic": topic, **params,
                         "rss": "VmHWM of each system's own process"},
              "summary": summary, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{report['date']}-{kind}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path, facts


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """The median of each measure over the repeats (medians of each column, not of one run)."""
    out: dict[str, dict[str, Any]] = {}
    for name, rs in runs.items():
        out[name] = {k: statistics.median(r[k] for r in rs)
                     for k in ("events", "seconds", "events_per_s", "cpu_s", "peak_rss_mb")}
        out[name]["stop_hangs"] = sum(bool(r.get("stop_hung")) for r in rs)
    base = out.get(BASELINE)
    for row in out.values():
        row["ratio_vs_raw"] = round(row["events_per_s"] / base["events_per_s"], 3) if base else None
    return out


def table(summary: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'system':<14} {'events/s':>11} {'vs raw':>7} {'CPU s':>7} {'peak RSS MB':>12}"]
    for name, r in summary.items():
        ratio = f"{r['ratio_vs_raw']:.0%}" if r["ratio_vs_raw"] is not None else "-"
        lines.append(f"{name:<14} {r['events_per_s']:>11,.0f} {ratio:>7} {r['cpu_s']:>7.2f} {r['peak_rss_mb']:>12.0f}")
    return "\n".join(lines)


def plot(summary: dict[str, dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    rates = [summary[n]["events_per_s"] / 1000 for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bars = ax.bar(names, rates, color=["#888888" if n == BASELINE else "#3b7dd8" for n in names])
    for bar, name in zip(bars, names, strict=True):
        ratio = summary[name]["ratio_vs_raw"]
        label = f"{bar.get_height():.0f}k" + (f"\n{ratio:.0%} of raw" if ratio is not None else "")
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=9, xytext=(0, 2), textcoords="offset points")
    ax.set_ylabel("thousand events/s (median)")
    ax.set_ylim(0, max(rates) * 1.25)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--size", type=int, default=500, help="approximate value size in bytes")
    p.add_argument("--broker", default=os.environ.get("GREY_BROKER", "kafka://127.0.0.1:9092"))
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--plot", type=Path, default=PLOT, help="where the bar chart goes")
    p.add_argument("--only", default=",".join(SYSTEMS), help="comma-separated: " + ", ".join(SYSTEMS))
    p.add_argument("--timeout", type=float, default=0.0, help="seconds per run (default: scales with --events)")
    p.add_argument("--run-one", metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("--topic", help=argparse.SUPPRESS)
    p.add_argument("--profile", metavar="FILE", help="with --run-one: write a pyinstrument profile to FILE")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    timeout = args.timeout or max(120.0, args.events / 5_000)
    if args.run_one:
        job = Job(args.broker, args.topic or f"bench-clicks-{args.events}-{args.size}-{args.partitions}",
                  args.events, args.partitions, timeout)
        print(json.dumps(run_one(args.run_one, job, args.profile)), flush=True)
        return
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if unknown := [n for n in names if n not in SYSTEMS]:
        raise SystemExit(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    topic = asyncio.run(prepare_topic(args.broker, args.events, args.size, args.partitions))
    job = Job(args.broker, topic, args.events, args.partitions, timeout)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for rep in range(args.repeat):
        for name in names:  # interleaved, so drift on the machine hits every system alike
            result = spawn(name, job)
            log(f"[{rep + 1}/{args.repeat}] {name}: {result['events_per_s']:,.0f} events/s, "
                f"{result['seconds']:.2f}s, CPU {result['cpu_s']:.2f}s, peak RSS {result['peak_rss_mb']:.0f} MB")
            runs[name].append(result)
    summary = summarize(runs)
    print(table(summary))
    params = {"producer_compression": "none", "timing": "first event to last processed",
              "cpu": "time.process_time over that window"}
    path, facts = write_report("runtime", args, argv, topic, params, summary, runs)
    plot(summary, f"{args.events:,} events x ~{args.size} B, {args.partitions} partitions, Kafka {facts['kafka']}, "
                  f"{facts['cores']} cores (median of {args.repeat})", args.plot)
    log(f"wrote {path} and {args.plot}")


if __name__ == "__main__":
    main()

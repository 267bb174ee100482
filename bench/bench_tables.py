"""Windowed aggregation in grey tables against the raw aiokafka decode loop, and changelog recovery.

    .venv/bin/python bench/bench_tables.py --events 1000000 --repeat 3

The case study: per (user_id, event_type), count, sum(amount) and avg(latency) in 1-minute
tumbling windows by event time (grace 5 minutes), at-least-once, on the local broker. The
click events of bench_runtime.py are produced once to ``bench-tables-clicks-{N}-{partitions}``
with event times spread over 10 minutes, so windows close as stream time advances. Every
system runs in its own subprocess (``--run-one NAME``) with a fresh group and data_dir:

* ``raw-aiokafka``: bench_runtime's getmany + msgspec decode loop (the baseline);
* ``grey-windowed-rocksdb`` / ``grey-windowed-memory``: the windowed table with either store;
* ``recover-rocksdb`` / ``recover-memory``: after the rocksdb run, a new process with an empty
  data_dir and the same app id rebuilds all partitions from that run's changelog with
  ``grey.tables.recover_partition``, as the runtime does on assignment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_runtime import (  # the runtime benchmark's data, baseline loop and reporting
    CHECKPOINT,
    ROOT,
    Click,
    Job,
    Tally,
    delete_topics,
    expected_total,
    fill_topic,
    log,
    peak_rss_kb,
    record_count,
    run_raw_aiokafka,
    write_report,
)
from bench_runtime import produce as produce_runtime

import grey
from grey.tables import Avg, Count, Sum, Table, WindowedTable, recover_partition
from grey.transport import open_transport
from grey.transport.kafka import bootstrap_servers
from grey.worker import tune_gc

PLOT = ROOT / "docs" / "img" / "bench-tables.png"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a whole minute: window starts are round
SPAN = 600.0  # event times run over 10 minutes: ten 1-minute windows per key
JITTER = 2.0  # each event up to 2 s earlier than its place in the stream: out of order, within grace
WINDOW, GRACE = 60.0, 300.0
BASELINE = "raw-aiokafka"
RECOVERY_TARGET = 200_000  # changelog records/s
Result = dict[str, Any]


# -- the data set ----------------------------------------------------------------------------

async def prepare_topic(broker: str, n: int, size: int, partitions: int) -> str:
    """Make sure ``bench-tables-clicks-{n}-{partitions}`` holds exactly n click events."""
    topic = f"bench-tables-clicks-{n}-{partitions}"
    return await fill_topic(broker, topic, n, partitions, lambda: produce(broker, topic, n, size))


async def produce(broker: str, topic: str, n: int, size: int) -> None:
    """bench_runtime's events (same amounts, so the same checksum), with event times T0 .. T0 + SPAN."""
    await produce_runtime(bootstrap_servers(broker), topic, n, size,
                          timestamp=lambda i, rng: round(T0 + SPAN * i / n - rng.uniform(0, JITTER), 3))


# -- the systems ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TablesJob(Job):
    app_id: str
    data_dir: str


def totals_table(app: grey.App, store: str) -> WindowedTable:
    """The case study's table: per [user_id, event_type] and minute, count, sum(amount), avg(latency)."""
    return app.Table("totals", key_type=tuple[str, str], store=store).tumbling(
        WINDOW, grace=GRACE, aggregations={"count": Count(), "amount": Sum("amount"), "latency": Avg("latency")},
        time="timestamp", idle_close=None)


def measures(tally: Tally, peak_rss_kb: int) -> Result:
    seconds = tally.last - tally.first
    return {"events": tally.count, "seconds": round(seconds, 4), "events_per_s": round(tally.count / seconds, 1),
            "cpu_s": round(tally.cpu_last - tally.cpu_first, 3), "peak_rss_mb": round(peak_rss_kb / 1024, 1)}


async def run_raw(job: TablesJob) -> Result:
    tally = await run_raw_aiokafka(job)
    if tally.count != job.events or tally.total != expected_total(job.events):
        raise SystemExit(f"raw-aiokafka: WRONG RESULT: {tally.count:,} events summing to {tally.total!r}")
    return measures(tally, peak_rss_kb())


def windowed_runner(store: str) -> Callable[[TablesJob], Coroutine[Any, Any, Result]]:
    async def run(job: TablesJob) -> Result:
        app = grey.App(job.app_id, broker=job.broker, checkpoint_interval=CHECKPOINT, data_dir=job.data_dir)
        topic = app.topic(job.topic, key_type=str, value_type=Click, partitions=job.partitions)
        totals = totals_table(app, store)
        tally, done, n = Tally(), asyncio.Event(), job.events

        @app.agent(topic, name="aggregate")
        async def aggregate(stream: grey.Stream) -> None:
            async for batch in stream.batches(max=1000):
                if not tally.count:
                    tally.start()
                totals.update_many(batch, key=lambda c: (c.user_id, c.event_type))
                tally.count += len(batch)
                if tally.count == n:
                    tally.stop()
                    done.set()

        async with app.running() as runtime:
            tune_gc()  # what `grey worker` does after start
            assert runtime.crashed is not None
            waiter: asyncio.Future[Any] = asyncio.ensure_future(done.wait())
            await asyncio.wait([waiter, runtime.crashed], timeout=job.timeout, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                waiter.cancel()
                raise RuntimeError(f"{tally.count:,} of {n:,} events in {job.timeout}s (or the app crashed)")
            await runtime.commit()  # waits for the checkpoint in flight, then makes the rest durable
            durable = time.perf_counter() - tally.first
            rss = peak_rss_kb()
            await asyncio.sleep(0.5)  # a tick or two: the windows due at the final stream time close
            windows = count = 0
            amount = 0.0
            for _, results in totals.items():  # every event is in exactly one tumbling window
                windows, count, amount = windows + 1, count + results["count"], amount + results["amount"]
        if count != n or amount != expected_total(n):
            raise SystemExit(f"{store}: WRONG RESULT: the windows hold {count:,} events summing to {amount!r}")
        changelog = await record_count(job.broker, f"{job.app_id}-totals-changelog", job.partitions)
        return {**measures(tally, rss), "durable_s": round(durable, 4), "durable_events_per_s": round(n / durable, 1),
                "windows": windows, "closed_windows": totals.closed_windows,
                "late_events": totals.late_events, "changelog_records": changelog}

    return run


def recovery_runner(store: str) -> Callable[[TablesJob], Coroutine[Any, Any, Result]]:
    """Rebuild every partition of the changelog of app ``job.app_id`` into an empty ``store``."""

    async def run(job: TablesJob) -> Result:
        app = grey.App(job.app_id, broker=job.broker, data_dir=job.data_dir)
        table = totals_table(app, store).table
        assert isinstance(table, Table)
        table.use_partitions(job.partitions)
        transport = open_transport(app.conf.broker)
        tune_gc()
        started, cpu = time.perf_counter(), time.process_time()
        done = [await recover_partition(table, p, transport, app.conf.client) for p in range(job.partitions)]
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        keys = sum(len(table.open_partition(p)) for p in range(job.partitions))
        table.close()
        records = sum(r.records for r in done)
        return {"records": records, "keys": keys, "seconds": round(seconds, 4),
                "records_per_s": round(records / seconds, 1), "cpu_s": round(cpu, 3),
                "peak_rss_mb": round(peak_rss_kb() / 1024, 1)}

    return run


SYSTEMS: dict[str, Callable[[TablesJob], Coroutine[Any, Any, Result]]] = {
    "raw-aiokafka": run_raw,
    "grey-windowed-rocksdb": windowed_runner("rocksdb://"),
    "grey-windowed-memory": windowed_runner("memory://"),
    "recover-rocksdb": recovery_runner("rocksdb://"),
    "recover-memory": recovery_runner("memory://"),
}
AGGREGATION = ["raw-aiokafka", "grey-windowed-rocksdb", "grey-windowed-memory"]
RECOVERY = ["recover-rocksdb", "recover-memory"]


def run_one(name: str, job: TablesJob, profile: str | None) -> Result:
    if not profile:
        return asyncio.run(SYSTEMS[name](job))
    from pyinstrument import Profiler

    with Profiler(interval=0.0005, async_mode="disabled") as profiler:
        result = asyncio.run(SYSTEMS[name](job))
    Path(profile).write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    return result


def spawn(name: str, job: TablesJob) -> Result:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-one", name, "--topic", job.topic,
           "--events", str(job.events), "--partitions", str(job.partitions), "--broker", job.broker,
           "--app-id", job.app_id, "--data-dir", job.data_dir, "--timeout", str(job.timeout)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=job.timeout + 120, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}); see its stderr above")
    result: Result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def one_round(job: Job, names: list[str], scratch: Path) -> dict[str, Result]:
    """Each system once; the recoveries read the changelog of this round's rocksdb run."""
    apps = {name: f"bench-tables-{uuid.uuid4().hex[:8]}" for name in AGGREGATION}
    out: dict[str, Result] = {}
    try:
        for name in names:
            app_id = apps.get(name, apps["grey-windowed-rocksdb"])
            data_dir = tempfile.mkdtemp(prefix=f"{name}-", dir=scratch)
            out[name] = spawn(name, TablesJob(job.broker, job.topic, job.events, job.partitions, job.timeout,
                                              app_id, data_dir))
            log(f"  {name}: " + ", ".join(f"{k} {v:,}" for k, v in out[name].items()))
    finally:  # each round writes ~1M changelog records per grey run: do not let them pile up
        asyncio.run(delete_topics(job.broker, [f"{a}-totals-changelog" for a in apps.values()]))
    return out


# -- reporting ------------------------------------------------------------------------------------------

def summarize(runs: dict[str, list[Result]]) -> dict[str, Result]:
    """The median of each measure over the repeats, and the ratios to the baseline or the target."""
    summary = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items() if rs}
    base = summary.get(BASELINE)
    for name, row in summary.items():
        if "events_per_s" in row and base:
            row["ratio_vs_raw"] = round(row["events_per_s"] / base["events_per_s"], 3)
        if "durable_events_per_s" in row and base:
            row["durable_ratio_vs_raw"] = round(row["durable_events_per_s"] / base["events_per_s"], 3)
        if name in RECOVERY:
            row["ratio_vs_target"] = round(row["records_per_s"] / RECOVERY_TARGET, 3)
    return summary


def table(summary: dict[str, Result]) -> str:
    lines = [f"{'system':<22} {'events/s':>9} {'vs raw':>7} {'durable/s':>9} {'vs raw':>7} {'CPU s':>6} "
             f"{'RSS MB':>7} {'windows':>8} {'closed':>7} {'late':>5} {'changelog':>10}"]
    for name in (n for n in AGGREGATION if n in summary):
        r = summary[name]
        durable = (f"{r['durable_events_per_s']:>9,.0f} {r['durable_ratio_vs_raw']:>7.0%}"
                   if "durable_events_per_s" in r else f"{'-':>9} {'-':>7}")
        lines.append(f"{name:<22} {r['events_per_s']:>9,.0f} {r.get('ratio_vs_raw', 1):>7.0%} {durable} "
                     f"{r['cpu_s']:>6.2f} {r['peak_rss_mb']:>7.0f} {r.get('windows', 0):>8,} "
                     f"{r.get('closed_windows', 0):>7,} {r.get('late_events', 0):>5,} "
                     f"{r.get('changelog_records', 0):>10,}")
    lines.append(f"\n{'recovery':<22} {'records':>9} {'seconds':>7} {'records/s':>10} {'vs 200k':>7} "
                 f"{'CPU s':>6} {'RSS MB':>7} {'keys':>8}")
    for name in (n for n in RECOVERY if n in summary):
        r = summary[name]
        lines.append(f"{name:<22} {r['records']:>9,} {r['seconds']:>7.2f} {r['records_per_s']:>10,.0f} "
                     f"{r['ratio_vs_target']:>7.0%} {r['cpu_s']:>6.2f} {r['peak_rss_mb']:>7.0f} {r['keys']:>8,}")
    return "\n".join(lines)


def plot(summary: dict[str, Result], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # (label, thousands per second, annotation, colour) for each bar of each panel
    left: list[tuple[str, float, str, str]] = []
    for name in (n for n in AGGREGATION if n in summary):
        r, label = summary[name], name.replace("grey-windowed-", "windowed\n")
        left.append((label, r["events_per_s"] / 1000, f"{r.get('ratio_vs_raw', 1):.0%} of raw",
                     "#888888" if name == BASELINE else "#3b7dd8"))
        if "durable_events_per_s" in r:
            left.append((label + "\nto durable", r["durable_events_per_s"] / 1000,
                         f"{r['durable_ratio_vs_raw']:.0%} of raw", "#9dbdeb"))
    right = [(name.replace("-", "\n"), summary[name]["records_per_s"] / 1000,
              f"{summary[name]['ratio_vs_target']:.0%} of target", "#3bb07d") for name in RECOVERY if name in summary]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [5, 2]})
    base = summary.get(BASELINE)
    panels = [(axes[0], left, "thousand events/s (median)", base and base["events_per_s"] / 2000),
              (axes[1], right, "thousand changelog records/s (median)", RECOVERY_TARGET / 1000)]
    for ax, bars, ylabel, target in panels:
        if not bars:
            ax.axis("off")
            continue
        drawn = ax.bar([b[0] for b in bars], [b[1] for b in bars], color=[b[3] for b in bars])
        for bar, (_, value, note, _) in zip(drawn, bars, strict=True):
            ax.annotate(f"{value:.0f}k\n{note}", (bar.get_x() + bar.get_width() / 2, value), ha="center",
                        va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
        if target is not None:
            ax.axhline(target, color="#d83b3b", linestyle="--", linewidth=1, label="target")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, max([b[1] for b in bars] + [target or 0]) * 1.3)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--size", type=int, default=500, help="approximate value size in bytes")
    p.add_argument("--broker", default="kafka://127.0.0.1:9092")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--plot", type=Path, default=PLOT)
    p.add_argument("--only", default=",".join(SYSTEMS), help="comma-separated: " + ", ".join(SYSTEMS))
    p.add_argument("--timeout", type=float, default=0.0, help="seconds per run (default: scales with --events)")
    p.add_argument("--profile", metavar="FILE", help="with --run-one: write a pyinstrument profile to FILE")
    for hidden in ("--run-one", "--topic", "--app-id", "--data-dir"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    timeout = args.timeout or max(120.0, args.events / 2_000)
    if args.run_one:
        one = TablesJob(args.broker, args.topic, args.events, args.partitions, timeout, args.app_id, args.data_dir)
        print(json.dumps(run_one(args.run_one, one, args.profile)), flush=True)
        return
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if unknown := [n for n in names if n not in SYSTEMS]:
        raise SystemExit(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    if set(names) & set(RECOVERY) and "grey-windowed-rocksdb" not in names:
        raise SystemExit("the recoveries replay the changelog of grey-windowed-rocksdb: run it too")
    names.sort(key=list(SYSTEMS).index)  # the recoveries after the run that writes their changelog
    topic = asyncio.run(prepare_topic(args.broker, args.events, args.size, args.partitions))
    job = Job(args.broker, topic, args.events, args.partitions, timeout)
    runs: dict[str, list[Result]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="bench-tables-") as scratch:
        for rep in range(args.repeat):
            log(f"[{rep + 1}/{args.repeat}]")
            for name, result in one_round(job, names, Path(scratch)).items():
                runs[name].append(result)
    summary = summarize(runs)
    print(table(summary))
    params = {"event_time_span_s": SPAN, "jitter_s": JITTER, "window_s": WINDOW, "grace_s": GRACE,
              "checkpoint_interval": CHECKPOINT,
              "timing": "first event to last processed; recovery: all partitions, one after another"}
    path, facts = write_report("tables", args, argv, topic, params, summary, runs)
    plot(summary, f"{args.events:,} events x ~{args.size} B, {args.partitions} partitions, 1-min tumbling windows, "
                  f"Kafka {facts['kafka']}, {facts['cores']} cores (median of {args.repeat})", args.plot)
    log(f"wrote {path} and {args.plot}")


if __name__ == "__main__":
    main()

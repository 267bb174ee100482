"""grey side by side with the systems users would pick instead, on the same broker and data.

    .venv/bin/python bench/bench_peers.py --events 500000 --repeat 3      # what docs/benchmarks.md shows
    .venv/bin/python bench/bench_peers.py --quick                         # the smoke run of make bench-quick

Every system is a program following ``bench/peers/contract.py`` (same arguments, one JSON
line out) and runs in its own process, one at a time, with a fresh consumer group, output
topics and state directory: raw aiokafka (w1, w2 at least once), grey (per event and per
batch), faust-streaming and Quix Streams (from ``.cache/peers-venv``, made by
``bench/peers/setup-venv``) and Kafka Streams (``bench/peers/kstreams/run``, built with Maven).
A system whose program or environment is missing is skipped with a note.

Phases: ``throughput`` (each workload and guarantee on the pre-produced topic; the results of
w1 and w2 are counted as a read_committed consumer sees them in the first round), ``latency``
(w1 and w2 fed at a steady rate, see bench/peers/latency.py) and ``sweeps`` (grey-batch's batch
size and the partition count). CPU seconds come from ``wait4`` on each program, peak RSS from its VmHWM.
Results: ``<out>/<date>-peers.json`` (``-peers-1000b.json`` for --size 1000); the table and
plots: bench/peers/charts.py. With nothing listening on a local --broker, the driver starts the
project's Kafka (scripts/with-services kafka) and stops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_runtime import (
    ROOT,
    click_events,
    delete_topics,
    expected_total,
    log,
    peak_rss_kb,
    prepare_topic,
    topic_partitions,
    write_report,
)
from peers import charts, latency
from peers.contract import INVALID_SUFFIX, create_topics
from peers.count_topic import count

PEERS = ROOT / "bench" / "peers"
PEERS_PYTHON = ROOT / ".cache" / "peers-venv" / "bin" / "python"
PHASES = ("throughput", "latency", "sweeps")


@dataclass(frozen=True)
class System:
    name: str
    command: tuple[str, ...]
    combos: frozenset[tuple[str, str]]  # (workload, guarantee) it runs
    needs: tuple[Path, ...] = ()  # files that must exist (its program, its environment)
    max_events: int | None = None  # the slowest peers read only the start of the topic (said in the report)


def combos(workloads: str, guarantees: str) -> frozenset[tuple[str, str]]:
    return frozenset((w, g) for w in workloads.split(",") for g in guarantees.split(","))


BOTH = "at_least_once,exactly_once"
SYSTEMS = [
    System("raw-aiokafka", (sys.executable, str(PEERS / "aiokafka_bench.py")), combos("w1,w2", "at_least_once")),
    System("grey-event", (sys.executable, str(PEERS / "grey_bench.py"), "--api", "event"), combos("w1,w2", BOTH)),
    System("grey-batch", (sys.executable, str(PEERS / "grey_bench.py"), "--api", "batch"), combos("w1,w2,w3", BOTH)),
    System("faust", (str(PEERS_PYTHON), str(PEERS / "faust_bench.py")), combos("w1,w2,w3", BOTH),
           (PEERS_PYTHON, PEERS / "faust_bench.py")),
    System("quixstreams", (str(PEERS_PYTHON), str(PEERS / "quix_bench.py")), combos("w1,w2,w3", BOTH),
           (PEERS_PYTHON, PEERS / "quix_bench.py")),
    System("kafka-streams", (str(PEERS / "kstreams" / "run"),), combos("w1,w2,w3", BOTH),
           (PEERS / "kstreams" / "run",)),
]


def expected_invalid(n: int) -> int:
    """w2's dead letters among the first n events: clicks of users u<i> with i % 100 == 99."""
    return sum(int(e["user_id"][1:]) % 100 == 99 for e in click_events(n))


@dataclass
class Run:
    """One program run: what it is given, and its process."""

    system: System
    workload: str
    guarantee: str
    events: int
    run_id: str
    proc: subprocess.Popen[bytes]
    started: float
    log_path: Path

    @property
    def output(self) -> str:
        return f"{self.run_id}-out"


def start(system: System, args: argparse.Namespace, topic: str, workload: str, guarantee: str, events: int,
          scratch: Path, partitions: int, extra: tuple[str, ...] = ()) -> Run:
    run_id = f"peer-{system.name}-{workload}-{uuid.uuid4().hex[:6]}"
    command = [*system.command, *extra, "--broker", args.broker.removeprefix("kafka://"), "--input", topic,
               "--output", f"{run_id}-out", "--workload", workload, "--guarantee", guarantee,
               "--events", str(events), "--app-id", run_id, "--state-dir", str(scratch / run_id),
               "--commit-interval", str(args.commit_interval), "--partitions", str(partitions),
               "--timeout", str(args.timeout)]
    log_path = scratch / f"{run_id}.log"
    proc = subprocess.Popen(command, stdout=(scratch / f"{run_id}.out").open("wb"), stderr=log_path.open("wb"),
                            cwd=ROOT)
    return Run(system, workload, guarantee, events, run_id, proc, time.perf_counter(), log_path)


def finish(run: Run) -> dict[str, Any]:
    """Wait for the program: its JSON line plus CPU seconds and peak RSS; checks count and checksum."""
    peak = 0
    while True:
        pid, status, usage = os.wait4(run.proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, peak_rss_kb(run.proc.pid))
        time.sleep(0.2)
    run.proc.returncode = os.waitstatus_to_exitcode(status)
    out = run.log_path.with_suffix(".out").read_text(errors="replace")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    what = f"{run.system.name} {run.workload} {run.guarantee}"
    if run.proc.returncode != 0 or not lines:
        tail = run.log_path.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{what} exited {run.proc.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["peak_rss_mb"] = round(peak / 1024, 1)
    result["wall_s"] = round(time.perf_counter() - run.started, 1)
    expected = expected_total(run.events)
    if result["events"] != run.events or abs(result["checksum"] - expected) > 1e-6 * max(1.0, expected):
        raise RuntimeError(f"{what}: {result['events']} events, checksum {result['checksum']} "
                           f"(expected {run.events} and {expected})")
    return result


async def check_outputs(broker: str, run: Run, invalid: int) -> dict[str, int]:
    """Count what w1/w2 wrote (read_committed): w1 one result per event; w2 the valid ones and the dead letters."""
    if run.workload == "w3":
        return {}
    broker = broker.removeprefix("kafka://")
    counted = {"output_records": await count(broker, run.output, idle=30.0)}
    wanted = run.events if run.workload == "w1" else run.events - invalid
    if run.workload == "w2":
        counted["dead_letters"] = await count(broker, run.output + INVALID_SUFFIX, idle=30.0)
        if counted["dead_letters"] != invalid:
            raise RuntimeError(f"{run.system.name} w2 {run.guarantee}: {counted['dead_letters']} dead letters, "
                               f"expected {invalid}")
    if counted["output_records"] != wanted:
        raise RuntimeError(f"{run.system.name} {run.workload} {run.guarantee}: {counted['output_records']} "
                           f"results, expected {wanted}")
    return counted


async def drop_run_topics(broker: str, run_id: str) -> None:
    """Delete every topic the run made (outputs, changelogs, repartition topics): they all carry its id."""
    await delete_topics(broker, [t for t in await topic_partitions(broker) if run_id in t])


def available(system: System) -> bool:
    missing = [str(p.relative_to(ROOT)) for p in system.needs if not p.exists()]
    if missing:
        log(f"skipping {system.name}: missing {', '.join(missing)} "
            "(make them with bench/peers/setup-venv or bench/peers/kstreams/build)")
    return not missing


def events_for(system: System, args: argparse.Namespace) -> int:
    return min(args.events, args.slow_events) if system.name in args.slow.split(",") else args.events


def throughput(args: argparse.Namespace, systems: list[System], scratch: Path, failures: list[str]
               ) -> dict[str, list[dict[str, Any]]]:
    # A system capped at fewer events reads a topic of its own holding just those: the same first events.
    counts = {events_for(s, args) for s in systems}
    topics = {n: asyncio.run(prepare_topic(args.broker, n, args.size, args.partitions)) for n in sorted(counts)}
    invalid = {n: expected_invalid(n) for n in counts}
    wanted = combos(args.workloads, args.guarantees)
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_no in range(1, args.repeat + 1):
        log(f"[throughput {round_no}/{args.repeat}] {', '.join(topics.values())}")
        for workload in args.workloads.split(","):
            for guarantee in args.guarantees.split(","):
                for system in systems:
                    if (workload, guarantee) not in system.combos & wanted:
                        continue
                    events = events_for(system, args)
                    run = start(system, args, topics[events], workload, guarantee, events, scratch,
                                args.partitions)
                    try:
                        result = finish(run)
                        if round_no == 1:
                            result |= asyncio.run(check_outputs(args.broker, run, invalid[events]))
                    except RuntimeError as exc:
                        failures.append(str(exc).splitlines()[0])
                        log(f"  FAILED {exc}")
                        continue
                    finally:
                        asyncio.run(drop_run_topics(args.broker, run.run_id))
                    runs.setdefault(f"{workload}/{guarantee}/{system.name}", []).append(result)
                    log(f"  {workload} {guarantee} {system.name}: {result['events_per_s']:,.0f} events/s "
                        f"(CPU {result['cpu_s']} s, RSS {result['peak_rss_mb']} MB)")
    return runs


def latency_runs(args: argparse.Namespace, systems: list[System], scratch: Path, failures: list[str]
                 ) -> dict[str, dict[str, Any]]:
    n = int(args.latency_rate * args.latency_seconds)
    invalid = expected_invalid(n)
    results: dict[str, dict[str, Any]] = {}
    log(f"[latency] {n:,} events at {args.latency_rate:,.0f}/s")
    for workload in [w for w in args.workloads.split(",") if w in ("w1", "w2")]:
        for guarantee in args.guarantees.split(","):
            for system in systems:
                if (workload, guarantee) not in system.combos:
                    continue
                source = f"peer-latency-{uuid.uuid4().hex[:6]}"
                asyncio.run(create_topics(args.broker.removeprefix("kafka://"), [source], args.partitions))
                run = start(system, args, source, workload, guarantee, n, scratch, args.partitions)
                try:
                    asyncio.run(create_topics(args.broker.removeprefix("kafka://"),
                                              [run.output, run.output + INVALID_SUFFIX], args.partitions))
                    measured = asyncio.run(latency.probe(
                        args.broker.removeprefix("kafka://"), run.run_id, source, run.output, args.partitions,
                        n=n, expected=n if workload == "w1" else n - invalid, rate=args.latency_rate,
                        size=args.size, timeout=args.timeout))
                    finish(run)
                except (RuntimeError, TimeoutError) as exc:
                    run.proc.kill()
                    run.proc.wait()
                    failures.append(f"latency: {str(exc).splitlines()[0]}")
                    log(f"  FAILED {exc}")
                    continue
                finally:
                    asyncio.run(drop_run_topics(args.broker, run.run_id))
                    asyncio.run(delete_topics(args.broker, [source]))
                results[f"{workload}/{guarantee}/{system.name}"] = measured
                log(f"  {workload} {guarantee} {system.name}: p50 {measured.get('p50_ms')} ms, "
                    f"p99 {measured.get('p99_ms')} ms ({measured['samples']:,} results)")
    return results


def sweeps(args: argparse.Namespace, scratch: Path, failures: list[str]) -> list[dict[str, Any]]:
    """grey-batch alone: batch size on the usual topic, then the partition count, on w1 and w3."""
    grey = next(s for s in SYSTEMS if s.name == "grey-batch")
    n = args.sweep_events
    points: list[tuple[str, int, int]] = [("batch_size", b, args.partitions) for b in (100, 300, 1000, 3000, 10_000)]
    points += [("partitions", 1000, p) for p in (1, 2, 4, 8, 16, 32)]
    out: list[dict[str, Any]] = []
    for sweep, batch, partitions in points:
        topic = asyncio.run(prepare_topic(args.broker, n, args.size, partitions))
        for workload, guarantee in (("w1", "at_least_once"), ("w3", "exactly_once")):
            run = start(grey, args, topic, workload, guarantee, n, scratch, partitions,
                        extra=("--batch-size", str(batch)))
            try:
                result = finish(run)
            except RuntimeError as exc:
                failures.append(f"sweep: {str(exc).splitlines()[0]}")
                log(f"  FAILED {exc}")
                continue
            finally:
                asyncio.run(drop_run_topics(args.broker, run.run_id))
            out.append({"sweep": sweep, "batch_size": batch, "partitions": partitions, **result})
            log(f"  [{sweep}] batch {batch} partitions {partitions} {workload} {guarantee}: "
                f"{result['events_per_s']:,.0f} events/s")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=500_000)
    p.add_argument("--size", type=int, default=500)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--workloads", default="w1,w2,w3")
    p.add_argument("--guarantees", default=BOTH)
    p.add_argument("--only", default=",".join(s.name for s in SYSTEMS))
    p.add_argument("--phases", default=",".join(PHASES))
    p.add_argument("--slow", default="faust", help="systems that read only --slow-events of the topic")
    p.add_argument("--slow-events", type=int, default=100_000)
    p.add_argument("--commit-interval", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--latency-rate", type=float, default=1000.0)
    p.add_argument("--latency-seconds", type=float, default=20.0)
    p.add_argument("--sweep-events", type=int, default=300_000)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--quick", action="store_true",
                   help="20,000 events, one round, throughput only; results under .cache/bench-quick")
    p.add_argument("--broker", default=os.environ.get("GREY_BROKER", "kafka://127.0.0.1:9092"))
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--plots", type=Path, default=ROOT / "docs" / "img")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.slow_events, args.repeat, args.phases = 20_000, 20_000, 1, "throughput"
        args.out = args.plots = ROOT / ".cache" / "bench-quick"
    return args


def ensure_local_broker(broker: str, argv: list[str]) -> None:
    """With no broker listening on a local address, run again under scripts/with-services kafka,
    which starts the project's Kafka there and stops it afterwards."""
    host, _, port = broker.removeprefix("kafka://").partition(":")
    if host not in ("127.0.0.1", "localhost") or os.environ.get("GREY_BENCH_STARTED_KAFKA"):
        return
    try:
        socket.create_connection((host, int(port or 9092)), timeout=2).close()
        return
    except OSError:
        pass
    log(f"no broker on {host}:{port or 9092}: starting the local Kafka (scripts/with-services kafka)")
    env = {**os.environ, "GREY_BENCH_STARTED_KAFKA": "1", "GREY_KAFKA_PORT": port or "9092"}
    script = ROOT / "scripts" / "with-services"
    os.execve(script, [str(script), "kafka", "--", sys.executable, str(Path(__file__).resolve()), *argv], env)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    ensure_local_broker(args.broker, sys.argv[1:] if argv is None else argv)
    wanted = {n.strip() for n in args.only.split(",")}
    systems = [s for s in SYSTEMS if s.name in wanted and available(s)]
    phases = args.phases.split(",")
    scratch = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    failures: list[str] = []
    runs: dict[str, list[dict[str, Any]]] = {}
    latencies: dict[str, dict[str, Any]] = {}
    sweep_points: list[dict[str, Any]] = []
    try:
        if "throughput" in phases:
            runs = throughput(args, systems, scratch, failures)
        if "latency" in phases:
            latencies = latency_runs(args, systems, scratch, failures)
        if "sweeps" in phases and "grey-batch" in wanted:
            sweep_points = sweeps(args, scratch, failures)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = summarize(runs)
    print(charts.markdown(summary, latencies))
    for failure in failures:
        print(f"failed: {failure}")
    params = {"workloads": args.workloads, "guarantees": args.guarantees, "commit_interval": args.commit_interval,
              "systems": [s.name for s in systems], "events_per_system": {s.name: events_for(s, args) for s in systems},
              "latency": {"rate": args.latency_rate, "seconds": args.latency_seconds},
              "sweep_events": args.sweep_events, "peers": peer_versions(), "failures": failures}
    out, suffix = args.out, "" if args.size == 500 else f"-{args.size}b"  # a day's 500 B results keep the plain name
    args.out = Path(tempfile.mkdtemp(prefix="bench-peers-report-"))
    written, _ = write_report("peers", args, argv, f"bench-clicks-{args.events}-{args.size}-{args.partitions}",
                              params, {"throughput": summary, "latency": latencies, "sweeps": sweep_points}, runs)
    out.mkdir(parents=True, exist_ok=True)
    path = Path(shutil.move(written, out / written.name.replace("-peers", f"-peers{suffix}")))
    charts.plot_all(summary, latencies, sweep_points, args.plots, suffix=suffix)
    log(f"wrote {path}")
    if failures:  # the results are written; the exit status still says a check failed
        sys.exit(f"{len(failures)} run(s) failed")


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Medians of each measure over the rounds, and the rounds' events/s."""
    summary = {}
    for key, results in runs.items():
        summary[key] = {k: statistics.median(r[k] for r in results)
                        for k in ("events_per_s", "processed_events_per_s", "cpu_s", "peak_rss_mb")}
        summary[key]["events"] = results[0]["events"]
        summary[key]["cpu_us_per_event"] = round(summary[key]["cpu_s"] / results[0]["events"] * 1e6, 1)
        summary[key]["rounds"] = [round(r["events_per_s"]) for r in results]
    return summary


def peer_versions() -> dict[str, str]:
    """Versions of the peers' libraries and runtimes, as installed for this run."""
    versions: dict[str, str] = {}
    if PEERS_PYTHON.exists():
        probe = ("import importlib.metadata as m, json; "
                 "print(json.dumps({p: m.version(p) for p in ('faust-streaming', 'quixstreams', "
                 "'confluent-kafka', 'rocksdict', 'aiokafka')}))")
        proc = subprocess.run([str(PEERS_PYTHON), "-c", probe], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            versions.update({f"peers-venv {k}": v for k, v in json.loads(proc.stdout).items()})
    pom = (PEERS / "kstreams" / "pom.xml").read_text()
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    versions["kafka-streams"] = found.group(1) if found else "unknown"
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    versions["java"] = (java.stderr.splitlines() or ["?"])[0]
    return versions


if __name__ == "__main__":
    main()

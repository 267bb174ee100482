"""grey side by side with the systems users would pick instead, on the same broker and data.

    .venv/bin/python bench/bench_peers.py --events 1000000 --repeat 3
    .venv/bin/python bench/bench_peers.py --quick          # 100,000 events, one round

Every system is a program following ``bench/peers/contract.py`` (same arguments, one JSON
line out) and runs in its own process, one at a time, with a fresh consumer group, output
topic and state directory: raw aiokafka (w1 only), grey (per event and per batch),
faust-streaming and Quix Streams (from ``.cache/peers-venv``, made by
``bench/peers/setup-venv``) and Kafka Streams (``bench/peers/kstreams/run``, built with Maven).
A system whose program or environment is missing is skipped with a note.

Workloads: w1 consume -> enrich -> produce; w3 the case study's 1-minute windowed
aggregation. Guarantees: at_least_once and exactly_once where the system has it.
CPU seconds and peak RSS come from ``wait4`` on each program's process. Plots and the
batch-size and partition sweeps are still to come.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_runtime import ROOT, expected_total, log, prepare_topic, write_report

PEERS = ROOT / "bench" / "peers"
PEERS_PYTHON = ROOT / ".cache" / "peers-venv" / "bin" / "python"


@dataclass(frozen=True)
class System:
    name: str
    command: tuple[str, ...]
    combos: frozenset[tuple[str, str]]  # (workload, guarantee) it runs
    needs: tuple[Path, ...]  # files that must exist (its program, its environment)


ALL_COMBOS = frozenset((w, g) for w in ("w1", "w3") for g in ("at_least_once", "exactly_once"))
SYSTEMS = [
    System("raw-aiokafka", (sys.executable, str(PEERS / "aiokafka_bench.py")),
           frozenset({("w1", "at_least_once")}), ()),
    System("grey-event", (sys.executable, str(PEERS / "grey_bench.py"), "--api", "event"),
           frozenset({("w1", "at_least_once"), ("w1", "exactly_once")}), ()),
    System("grey-batch", (sys.executable, str(PEERS / "grey_bench.py"), "--api", "batch"), ALL_COMBOS, ()),
    System("faust", (str(PEERS_PYTHON), str(PEERS / "faust_bench.py")), ALL_COMBOS,
           (PEERS_PYTHON, PEERS / "faust_bench.py")),
    System("quixstreams", (str(PEERS_PYTHON), str(PEERS / "quix_bench.py")), ALL_COMBOS,
           (PEERS_PYTHON, PEERS / "quix_bench.py")),
    System("kafka-streams", (str(PEERS / "kstreams" / "run"),), ALL_COMBOS, (PEERS / "kstreams" / "run",)),
]


def run_system(system: System, args: argparse.Namespace, topic: str, workload: str, guarantee: str,
               scratch: Path) -> dict[str, Any]:
    """One run of one system: its JSON line, plus CPU seconds and peak RSS of its process."""
    run_id = f"peer-{system.name}-{workload}-{uuid.uuid4().hex[:6]}"
    command = [*system.command, "--broker", args.broker.removeprefix("kafka://"), "--input", topic,
               "--output", f"{run_id}-out", "--workload", workload, "--guarantee", guarantee,
               "--events", str(args.events), "--app-id", run_id, "--state-dir", str(scratch / run_id),
               "--commit-interval", str(args.commit_interval), "--partitions", str(args.partitions),
               "--timeout", str(args.timeout)]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=(scratch / f"{run_id}.log").open("wb"),
                            cwd=ROOT, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (scratch / f"{run_id}.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{system.name} {workload} {guarantee} exited {proc.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    expected = expected_total(args.events)
    if result["events"] != args.events or abs(result["checksum"] - expected) > 1e-6 * max(1.0, expected):
        raise RuntimeError(f"{system.name}: {result['events']} events, checksum {result['checksum']} "
                           f"(expected {args.events} and {expected})")
    return result


def available(system: System) -> bool:
    missing = [str(p.relative_to(ROOT)) for p in system.needs if not p.exists()]
    if missing:
        log(f"skipping {system.name}: missing {', '.join(missing)} "
            "(make them with bench/peers/setup-venv or bench/peers/kstreams/build)")
    return not missing


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    summary = {}
    for key, results in runs.items():
        summary[key] = {k: statistics.median(r[k] for r in results)
                        for k in ("events_per_s", "processed_events_per_s", "cpu_s", "peak_rss_mb")}
    return summary


def table(summary: dict[str, dict[str, Any]]) -> str:
    lines = ["| workload | guarantee | system | events/s | vs raw aiokafka | vs kafka-streams | CPU s | RSS MB |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for key, row in summary.items():
        workload, guarantee, name = key.split("/")
        raw = summary.get("w1/at_least_once/raw-aiokafka")
        kstreams = summary.get(f"{workload}/{guarantee}/kafka-streams")
        vs_raw = f"{row['events_per_s'] / raw['events_per_s']:.0%}" if raw and workload == "w1" else ""
        vs_ks = f"{row['events_per_s'] / kstreams['events_per_s']:.2f}x" if kstreams else ""
        lines.append(f"| {workload} | {guarantee} | {name} | {row['events_per_s']:,.0f} | {vs_raw} | {vs_ks} "
                     f"| {row['cpu_s']:.1f} | {row['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--size", type=int, default=500)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--workloads", default="w1,w3")
    p.add_argument("--guarantees", default="at_least_once,exactly_once")
    p.add_argument("--only", default=",".join(s.name for s in SYSTEMS))
    p.add_argument("--commit-interval", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--quick", action="store_true", help="100,000 events, one round, results under .cache")
    p.add_argument("--broker", default=os.environ.get("GREY_BROKER", "kafka://127.0.0.1:9092"))
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    if args.quick:
        args.events, args.repeat = 100_000, 1
        args.out = ROOT / ".cache" / "bench-quick"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    topic = asyncio.run(prepare_topic(args.broker, args.events, args.size, args.partitions))
    wanted = {n.strip() for n in args.only.split(",")}
    systems = [s for s in SYSTEMS if s.name in wanted and available(s)]
    combos = [(w, g) for w in args.workloads.split(",") for g in args.guarantees.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    runs: dict[str, list[dict[str, Any]]] = {}
    failures: list[str] = []
    try:
        for round_no in range(1, args.repeat + 1):
            log(f"[{round_no}/{args.repeat}]")
            for workload, guarantee in combos:
                for system in systems:
                    if (workload, guarantee) not in system.combos:
                        continue
                    try:
                        result = run_system(system, args, topic, workload, guarantee, scratch)
                    except RuntimeError as exc:
                        failures.append(str(exc).splitlines()[0])
                        log(f"  FAILED {exc}")
                        continue
                    runs.setdefault(f"{workload}/{guarantee}/{system.name}", []).append(result)
                    log(f"  {workload} {guarantee} {system.name}: {result['events_per_s']:,.0f} events/s "
                        f"(CPU {result['cpu_s']} s, RSS {result['peak_rss_mb']} MB)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = summarize(runs)
    print(table(summary))
    for failure in failures:
        print(f"failed: {failure}")
    params = {"workloads": combos, "commit_interval": args.commit_interval,
              "systems": [s.name for s in systems], "failures": failures}
    path, _ = write_report("peers", args, argv, topic, params, summary, runs)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()

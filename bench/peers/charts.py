"""The side-by-side benchmark's Markdown table and plots (from bench_peers.py's summary).

    .venv/bin/python bench/peers/charts.py bench/results/2026-12-05-peers.json [--plots docs/img]

prints the table of a results file again and, with --plots, draws its plots there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SYSTEM_ORDER = ("raw-aiokafka", "grey-event", "grey-batch", "faust", "quixstreams", "kafka-streams")
COLORS = {"raw-aiokafka": "#888888", "grey-event": "#7fa9e6", "grey-batch": "#1f5fbf", "faust": "#d98c2b",
          "quixstreams": "#3aa55d", "kafka-streams": "#b33a3a"}
GREY = "grey-batch"


def _keys(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(workload, guarantee) pairs in a stable order."""
    return sorted({(k.split("/")[0], k.split("/")[1]) for k in summary})


def markdown(summary: dict[str, dict[str, Any]], latencies: dict[str, dict[str, Any]]) -> str:
    """One row per workload, guarantee and system: events/s, its ratio to raw aiokafka and grey's to it."""
    lines = ["| workload | guarantee | system | events/s to the last commit | rounds | processed/s "
             "| vs raw aiokafka | grey-batch ÷ system | CPU µs/event | RSS MB | latency p50 / p99 ms |",
             "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    most = max((r["events"] for r in summary.values()), default=0)  # a capped system's count is shown
    for workload, guarantee in _keys(summary):
        raw = summary.get(f"{workload}/at_least_once/raw-aiokafka")
        grey = summary.get(f"{workload}/{guarantee}/{GREY}")
        for name in SYSTEM_ORDER:
            key = f"{workload}/{guarantee}/{name}"
            row = summary.get(key)
            if row is None:
                continue
            rate = row["events_per_s"]
            vs_raw = f"{rate / raw['events_per_s']:.0%}" if raw else ""
            vs_grey = f"{grey['events_per_s'] / rate:.2f}x" if grey and name != GREY else ""
            lat = latencies.get(key, {})
            lat_text = f"{lat['p50_ms']:,.0f} / {lat['p99_ms']:,.0f}" if "p99_ms" in lat else ""
            rounds = ", ".join(f"{r / 1000:.0f}k" for r in row["rounds"])
            events = "" if row["events"] == most else f" ({row['events'] // 1000}k events)"
            lines.append(f"| {workload} | {guarantee} | {name}{events} | {rate:,.0f} | {rounds} "
                         f"| {row['processed_events_per_s']:,.0f} | {vs_raw} | {vs_grey} "
                         f"| {row['cpu_us_per_event']:.1f} | {row['peak_rss_mb']:.0f} | {lat_text} |")
    return "\n".join(lines)


def sweep_table(points: list[dict[str, Any]]) -> str:
    """grey-batch's sweeps: events/s to the last commit for each point, w1 at-least-once and w3 exactly-once."""
    lines = ["| sweep | batch size | partitions | w1 at_least_once events/s | w3 exactly_once events/s |",
             "|---|---:|---:|---:|---:|"]
    rows: dict[tuple[str, int, int], dict[str, float]] = {}
    for p in points:
        rows.setdefault((p["sweep"], p["batch_size"], p["partitions"]), {})[p["workload"]] = p["events_per_s"]
    for (sweep, batch, partitions), rates in rows.items():
        w1, w3 = rates.get("w1"), rates.get("w3")
        lines.append(f"| {sweep} | {batch:,} | {partitions} | {f'{w1:,.0f}' if w1 else ''} "
                     f"| {f'{w3:,.0f}' if w3 else ''} |")
    return "\n".join(lines)


def plot_all(summary: dict[str, dict[str, Any]], latencies: dict[str, dict[str, Any]],
             sweeps: list[dict[str, Any]], folder: Path, suffix: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if summary:
        written.append(_throughput(summary, folder / f"bench-peers{suffix}.png"))
    if latencies:
        written.append(_latency(latencies, folder / f"bench-peers-latency{suffix}.png"))
    if sweeps:
        written.append(_sweeps(sweeps, folder / f"bench-grey-sweeps{suffix}.png"))
    return written


def _throughput(summary: dict[str, dict[str, Any]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    groups = _keys(summary)
    names = [n for n in SYSTEM_ORDER if any(f"{w}/{g}/{n}" in summary for w, g in groups)]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(11, 4.6))
    for i, name in enumerate(names):
        xs, ys = [], []
        for j, (w, g) in enumerate(groups):
            row = summary.get(f"{w}/{g}/{name}")
            if row:
                xs.append(j + (i - (len(names) - 1) / 2) * width)
                ys.append(row["events_per_s"])
        bars = ax.bar(xs, ys, width, label=name, color=COLORS.get(name))
        for bar, y in zip(bars, ys, strict=True):
            ax.annotate(f"{y / 1000:.0f}k" if y >= 1000 else f"{y:.0f}", (bar.get_x() + bar.get_width() / 2, y),
                        ha="center", va="bottom", fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), [f"{w}\n{g.replace('_', '-')}" for w, g in groups])
    ax.set_ylabel("events/s (median, log scale)")
    ax.set_title("Throughput per system and workload (to the commit of the last event)", fontsize=10)
    ax.legend(fontsize=8, ncols=3, loc="upper left")
    ax.set_ylim(top=ax.get_ylim()[1] * 4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency(latencies: dict[str, dict[str, Any]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    groups = _keys(latencies)
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.8), sharey=True, squeeze=False)
    for ax, (w, g) in zip(axes[0], groups, strict=True):
        names = [n for n in SYSTEM_ORDER if "p99_ms" in latencies.get(f"{w}/{g}/{n}", {})]
        p50 = [latencies[f"{w}/{g}/{n}"]["p50_ms"] for n in names]
        p99 = [latencies[f"{w}/{g}/{n}"]["p99_ms"] for n in names]
        ax.bar(range(len(names)), p99, color=[COLORS.get(n) for n in names], alpha=0.45, label="p99")
        ax.bar(range(len(names)), p50, color=[COLORS.get(n) for n in names], label="p50")
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"{w} {g.replace('_', '-')}", fontsize=9)
        ax.set_yscale("log")
    axes[0][0].set_ylabel("ms, produce → visible (p50 solid, p99 light)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _sweeps(points: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, sweep, axis in ((axes[0], "batch_size", "batch size (stream.batches(max=…))"),
                            (axes[1], "partitions", "partitions of the input topic")):
        for (w, g), color in ((("w1", "at_least_once"), "#1f5fbf"), (("w3", "exactly_once"), "#b33a3a")):
            rows = sorted((p for p in points if p["sweep"] == sweep and p["workload"] == w and p["guarantee"] == g),
                          key=lambda p: p[sweep])
            ax.plot([p[sweep] for p in rows], [p["events_per_s"] / 1000 for p in rows], "o-", color=color,
                    label=f"{w} {g.replace('_', '-')}")
        ax.set_xscale("log", base=2 if sweep == "partitions" else 10)
        ax.set_xlabel(axis)
        ax.set_ylabel("thousand events/s")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("grey-batch sweeps", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--plots", type=Path)
    parser.add_argument("--suffix", default="")
    args = parser.parse_args()
    report = json.loads(args.results.read_text())
    summary = report["summary"]
    print(markdown(summary["throughput"], summary["latency"]))
    if summary["sweeps"]:
        print()
        print(sweep_table(summary["sweeps"]))
    if args.plots:
        for path in plot_all(summary["throughput"], summary["latency"], summary["sweeps"], args.plots, args.suffix):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()

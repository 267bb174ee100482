"""Clickstream: per-user click events as in the case study, counted by a real `grey worker`.

Two roles in one file:

* the app: ``grey worker -A clickstream`` (run from this folder) counts events
  per event type and sums amounts, and when it has seen the expected number of
  events it publishes a summary with the throughput it measured;
* the driver: ``python examples/clickstream.py --events 200000`` produces the
  synthetic events, starts the worker, prints the worker's summary next to the
  totals computed while producing, then stops the worker with SIGTERM.

``make demo`` runs the driver against the local Kafka that scripts/services starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import grey

RUN = os.environ.get("CLICKSTREAM_RUN", "dev")
EXPECTED = int(os.environ.get("CLICKSTREAM_EVENTS", "0"))
EVENT_TYPES = ("click", "view", "purchase", "scroll", "hover")


class Click(grey.Record):
    user_id: str
    event_type: str
    amount: float
    latency: float
    timestamp: float
    page: str


class Summary(grey.Record):
    events: int
    by_type: dict[str, int]
    amount_by_type: dict[str, float]
    top_users: list[tuple[str, int]]
    seconds: float
    events_per_second: float


app = grey.App(f"clickstream-{RUN}", broker="kafka://127.0.0.1:9092")  # GREY_BROKER overrides
clicks = app.topic(f"clickstream-{RUN}-clicks", key_type=str, value_type=Click, partitions=8)
summaries = app.topic(f"clickstream-{RUN}-summary", key_type=str, value_type=Summary, partitions=1)

by_type: Counter[str] = Counter()
amount_by_type: dict[str, float] = dict.fromkeys(EVENT_TYPES, 0.0)
per_user: Counter[str] = Counter()
seen = 0
first_seen = 0.0


@app.agent(clicks)
async def count_clicks(stream: grey.Stream) -> None:
    """Count events per type and per user, batch by batch (the fast path)."""
    global seen, first_seen
    async for batch in stream.batches(max=1000):
        if not first_seen:
            first_seen = time.monotonic()
        for click in batch:
            by_type[click.event_type] += 1
            amount_by_type[click.event_type] += click.amount
            per_user[click.user_id] += 1
        seen += len(batch)
        if EXPECTED and seen == EXPECTED:
            seconds = time.monotonic() - first_seen
            await summaries.send_and_wait(Summary(
                events=seen, by_type=dict(by_type), amount_by_type=amount_by_type,
                top_users=per_user.most_common(3), seconds=seconds, events_per_second=seen / seconds,
            ), key="summary")


@app.timer(2.0)
async def progress() -> None:
    if seen:
        print(f"  worker: {seen:,} events processed", flush=True)


# -- the driver -------------------------------------------------------------


async def produce(count: int, seed: int = 7) -> tuple[Counter[str], dict[str, float], float]:
    """Send ``count`` synthetic clicks (10,000 users) and return what a correct count must show."""
    rng = random.Random(seed)
    expected: Counter[str] = Counter()
    amounts: dict[str, float] = dict.fromkeys(EVENT_TYPES, 0.0)
    started = time.monotonic()
    async with app.running(consume=False, run_timers=False):
        chunk: list[tuple[str, Click]] = []
        for i in range(count):
            kind = rng.choice(EVENT_TYPES)
            amount = round(rng.uniform(0, 200), 2) if kind == "purchase" else 0.0
            user = f"u{rng.randrange(10_000):05d}"
            click = Click(user_id=user, event_type=kind, amount=amount, latency=rng.uniform(1, 80),
                          timestamp=time.time(), page=f"/product/{rng.randrange(5000)}")
            chunk.append((user, click))
            expected[kind] += 1
            amounts[kind] += amount
            if len(chunk) >= 10_000 or i == count - 1:
                await (await clicks.send_many(chunk))  # placed by key like send, packed into batches
                chunk.clear()
    return expected, amounts, time.monotonic() - started


async def wait_for_summary(seconds: float) -> Summary:
    from grey.transport import TP, ClientSettings, open_transport

    consumer = open_transport(app.conf.broker).consumer(ClientSettings(group_id=f"clickstream-{RUN}-reader"))

    async def noop(tps: set[TP]) -> None:
        return None

    consumer.subscribe([summaries.name], noop, noop)
    await consumer.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500, max_records=None)).values():
                for message in messages:
                    if message.value is not None:
                        summary: Summary = summaries.value_codec.loads(message.value)
                        return summary
    finally:
        await consumer.stop()
    raise TimeoutError(f"no summary from the worker within {seconds:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    env = {**os.environ, "CLICKSTREAM_RUN": run, "CLICKSTREAM_EVENTS": str(args.events),
           "GREY_BROKER": app.conf.broker, "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    here = Path(__file__).resolve().parent
    # Re-import with this run's names so the driver and the worker agree on topics.
    sys.path.insert(0, str(here))
    import clickstream as run_module

    print(f"producing {args.events:,} click events to {run_module.clicks.name} ...", flush=True)
    expected, amounts, produce_s = asyncio.run(run_module.produce(args.events))
    print(f"  produced in {produce_s:.1f}s ({args.events / produce_s:,.0f} events/s)")
    print("starting: grey worker -A clickstream", flush=True)
    worker = subprocess.Popen([sys.executable, "-m", "grey", "worker", "-A", "clickstream", "-l", "warning"],
                              cwd=here, env=env)
    try:
        summary = asyncio.run(run_module.wait_for_summary(args.timeout))
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
    print()
    print(f"{'event type':<10} {'count':>9} {'expected':>9} {'amount':>14} {'expected':>14}")
    ok = summary.events == args.events
    for kind in EVENT_TYPES:
        got, want = summary.by_type.get(kind, 0), expected[kind]
        amount, want_amount = summary.amount_by_type.get(kind, 0.0), amounts[kind]
        ok = ok and got == want and abs(amount - want_amount) < 0.01
        print(f"{kind:<10} {got:>9,} {want:>9,} {amount:>14,.2f} {want_amount:>14,.2f}")
    print(f"top users: {', '.join(f'{u} ({n})' for u, n in summary.top_users)}")
    print(f"worker throughput: {summary.events:,} events in {summary.seconds:.2f}s = "
          f"{summary.events_per_second:,.0f} events/s (first to last event, one worker, one core)")
    print(f"worker exit code after SIGTERM: {code}")
    if not ok or code != 0:
        print("MISMATCH: the worker's counts differ from what was produced", file=sys.stderr)
        raise SystemExit(1)
    print("all counts match what was produced")


if __name__ == "__main__":
    main()

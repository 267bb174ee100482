"""faust-streaming as a peer of the side-by-side benchmark (the contract is in contract.py).

    .cache/peers-venv/bin/python bench/peers/faust_bench.py --input bench-clicks-100000-500-8 \
        --output faust-out-1 --workload w1 --guarantee at_least_once --events 100000 \
        --app-id faust-1 --state-dir /tmp/faust-1

Runs in the peers venv (bench/peers/setup-venv): faust-streaming[rocksdict,fast] 0.15.3.

- w1: an agent reads the click JSON as a dict (faust's "json" codec, orjson via the [fast]
  extra), adds ``cents`` and ``purchase`` and sends the dict, keyed by the same user id,
  to the output topic.
- w2: the same agent shape; a click that fails ``contract.valid`` is sent as it came to the
  dead-letter topic, a valid one gains its profile from the in-process lookup (``enrich_profile``).
- w3: an agent reads clicks as a ``faust.Record`` and updates a windowed table keyed by
  "user_id|event_type" (the input is keyed by user_id, so both live in the same partition and
  no repartition is needed): 1-minute tumbling windows on the ``timestamp`` field
  (``relative_to_field``), kept 360 s (faust has no separate grace: ``expires`` = window +
  300 s grace), value [count, sum(amount), sum(latency)] (avg = sum/count on read), stored in
  RocksDB (``store="rocksdb://"``, the rocksdict driver) with its changelog topic. Results are
  kept in the table (state + changelog), not emitted to the output topic.

Stopping: the app runs in-process: a ``faust.Worker`` is started as a task of our own event
loop (no CLI, no signals). The agent sets an asyncio.Event at the N-th record; main() then
polls the group's committed offsets with a plain aiokafka client (contract.wait_committed),
and finally awaits ``worker.stop()``, which stops agents, commits, and closes the clients.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers.contract import (
    INVALID_SUFFIX,
    Tally,
    create_topics,
    enrich,
    enrich_profile,
    log,
    output_topics,
    parse_args,
    profiles,
    report,
    valid,
    wait_committed,
)

WINDOW_S = 60.0
GRACE_S = 300.0

# The settings (faust defaults in brackets). faust's docs on stream_buffer_maxsize: higher gives better
# throughput, provided commits are frequent; 32768 stays clear of its warning about huge buffers with
# sends/table updates.
FAST_SETTINGS: dict[str, Any] = {
    "stream_buffer_maxsize": 32_768,  # [4096] records an agent may prefetch
    "broker_commit_every": 10_000,  # [10_000] also commit every n acked records
    "consumer_max_fetch_size": 4 * 1024**2,  # [1 MiB] per partition per fetch
    "producer_linger": 0.005,  # [0] batch sends for 5 ms (aiokafka linger_ms)
    "producer_max_batch_size": 256 * 1024,  # [16 KiB]
    "producer_acks": -1,  # [-1] acks=all (the default, said here for comparison with the other peers)
    "stream_wait_empty": False,  # [True] don't wait for in-flight events at shutdown
    "web_enabled": False,  # no HTTP server (port clashes between runs; it's not part of the work)
    "consumer_auto_offset_reset": "earliest",
    "topic_replication_factor": 1,
}


class Click(faust.Record, serializer="json"):
    user_id: str
    event_type: str
    amount: float
    latency: float
    timestamp: float
    page: str
    pad: str


def zero() -> list[float]:
    return [0, 0.0, 0.0]


def build_app(args: Any, tally: Tally, done: asyncio.Event) -> faust.App:
    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.broker}",
        processing_guarantee=args.guarantee,  # "at_least_once" | "exactly_once" (transactional producers)
        broker_commit_interval=args.commit_interval,  # [2.8 s]
        topic_partitions=args.partitions,  # tables' changelog topics get the input's 8 partitions
        store="rocksdb://" if args.workload == "w3" else "memory://",
        datadir=args.state_dir,
        **FAST_SETTINGS,
    )

    def seen(amount: float) -> None:
        tally.seen(amount)
        if tally.count == args.events:
            done.set()

    if args.workload == "w1":
        source = app.topic(args.input, key_serializer="raw", value_serializer="json")
        sink = app.topic(args.output, key_serializer="raw", value_serializer="json")

        @app.agent(source)
        async def transform(stream: faust.StreamT) -> None:
            async for key, click in stream.items():
                await sink.send(key=key, value=enrich(click))  # awaits the enqueue, not the delivery
                seen(click["amount"])
    elif args.workload == "w2":
        source = app.topic(args.input, key_serializer="raw", value_serializer="json")
        good = app.topic(args.output, key_serializer="raw", value_serializer="json")
        bad = app.topic(args.output + INVALID_SUFFIX, key_serializer="raw", value_serializer="json")
        known = profiles()

        @app.agent(source)
        async def validate(stream: faust.StreamT) -> None:
            async for key, click in stream.items():
                if valid(click, known):
                    await good.send(key=key, value=enrich_profile(click, known[click["user_id"]]))
                else:
                    await bad.send(key=key, value=click)
                seen(click["amount"])
    else:
        source = app.topic(args.input, key_serializer="raw", value_type=Click)
        totals = app.Table(
            "w3-totals", default=zero, partitions=args.partitions,
            options={"driver": "rocksdict"},
        ).tumbling(WINDOW_S, expires=timedelta(seconds=WINDOW_S + GRACE_S)).relative_to_field(Click.timestamp)

        @app.agent(source)
        async def aggregate(stream: faust.StreamT) -> None:
            async for click in stream:
                key = f"{click.user_id}|{click.event_type}"
                count, amount, latency = totals[key].value()
                totals[key] = [count + 1, amount + click.amount, latency + click.latency]
                seen(click.amount)

    return app


async def run(args: Any) -> int:
    # faust creates only the topics it consumes (and its internal ones): the outputs are made up front
    await create_topics(args.broker, output_topics(args), args.partitions)
    tally = Tally()
    done = asyncio.Event()
    app = build_app(args, tally, done)
    # loglevel WARNING: faust's INFO logging per rebalance/commit is not part of the work; logs go to stderr.
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False, stdout=sys.stderr,
                          override_logging=True)
    running = asyncio.ensure_future(worker.start())
    deadline = time.monotonic() + args.timeout
    try:
        waiter = asyncio.ensure_future(done.wait())
        finished, _ = await asyncio.wait({running, waiter}, timeout=args.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        if waiter not in finished:
            waiter.cancel()
            why = f"the worker stopped: {app.crash_reason!r}" if running in finished else "timeout"
            log(f"faust: {why} after {tally.count:,} of {args.events:,} records")
            return 1
        log(f"faust: {tally.count:,} records processed in {tally.last - tally.first:.2f}s; waiting for commits")
        committed_at = await wait_committed(args.broker, args.app_id, args.input, args.partitions,
                                            max(1.0, deadline - time.monotonic()))
    except TimeoutError as exc:
        log(f"faust: {exc}")
        return 1
    finally:
        try:
            await asyncio.wait_for(worker.stop(), 60)
        except TimeoutError:
            log("faust: worker.stop() did not finish within 60 s")
        running.cancel()
    report("faust", args, tally, committed_at)
    return 0


def main() -> None:
    args = parse_args()
    os.makedirs(args.state_dir, exist_ok=True)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    # faust's logging setup leaves aiokafka's per-request debug records enabled (~3 per event, ~10% of the
    # CPU time in a profile) even at WARNING: disable everything below WARNING outright.
    logging.disable(logging.INFO)
    # Not asyncio.run(): its clean-up (cancel every task, join the default executor) can hang on what a
    # crashed faust app leaves behind. The app is already stopped (or has failed) when run() returns.
    code = asyncio.new_event_loop().run_until_complete(run(args))
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()

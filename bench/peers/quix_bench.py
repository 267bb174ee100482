"""Quix Streams as a peer of the side-by-side benchmark (the contract is in contract.py).

    .cache/peers-venv/bin/python bench/peers/quix_bench.py --input bench-clicks-100000-500-8 \
        --output quix-out-1 --workload w1 --guarantee at_least_once --events 100000 \
        --app-id quix-1 --state-dir /tmp/quix-1

Runs in the peers venv (bench/peers/setup-venv): quixstreams 3.28.1 (confluent-kafka/librdkafka,
RocksDB state through rocksdict).

- w1: a StreamingDataFrame: ``apply`` (adds ``cents`` and ``purchase`` to the JSON dict) then
  ``to_topic`` (key: the same user id string, value: JSON).
- w2: two branches of one StreamingDataFrame (Quix's branching): ``filter(valid)`` → ``apply``
  (profile from the in-process lookup) → ``to_topic(output)``, and ``filter(not valid)`` →
  ``to_topic`` of the dead-letter topic, the rows as they came.
- w3: ``group_by`` "user_id|event_type" (Quix windows are always per message key, and re-keying
  is done through a ``repartition__`` topic: that is Quix's way), then a 1-minute
  ``tumbling_window`` with ``grace_ms`` 300 s on the event's ``timestamp`` field (a
  ``timestamp_extractor`` on the input topic), ``.agg(count=Count(), amount=Sum("amount"),
  latency=Mean("latency"))`` in RocksDB state (Quix's default store) with its changelog topic,
  and ``.final()``: a window's result is computed when it closes; it is not produced to a topic
  (results are kept in the state, like the faust peer). Because the aggregation reads the
  repartition topic, "committed" waits for the group's offsets on both the input and the
  repartition topic to reach their ends (end - 1 there under exactly-once: the last offset is a
  transaction marker, which a commit never passes).

Stopping: ``Application.run()`` blocks the main thread; a watcher thread waits for the N-th
record (a threading.Event set by the counting step), then polls the group's committed offsets
with a plain aiokafka client (contract.wait_committed) and calls ``app.stop()``, which Quix
documents as the way to stop an app from another thread: the poll loop ends, the last checkpoint
is committed and the clients and state are closed before ``run()`` returns.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows.aggregations import Count, Mean, Sum
from quixstreams.models import TopicConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peers.contract import (
    INVALID_SUFFIX,
    Tally,
    enrich,
    enrich_profile,
    log,
    parse_args,
    profiles,
    report,
    valid,
    wait_committed,
)

WINDOW_MS = 60_000
GRACE_MS = 300_000
GUARANTEES = {"at_least_once": "at-least-once", "exactly_once": "exactly-once"}


def event_time(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    """Quix's TimestampExtractor: milliseconds from the event's ``timestamp`` field (seconds)."""
    return int(value["timestamp"] * 1000)


def build_app(args: Any, tally: Tally, done: threading.Event) -> Application:
    app = Application(
        broker_address=args.broker,
        consumer_group=args.app_id,
        processing_guarantee=GUARANTEES[args.guarantee],  # type: ignore[arg-type]
        commit_interval=args.commit_interval,  # [5.0 s]
        commit_every=0,  # [0] commit on the interval only
        auto_offset_reset="earliest",
        state_dir=args.state_dir,  # RocksDB per store and partition (the default state backend)
        loglevel="WARNING",  # [INFO]
        # librdkafka's defaults are already the fast ones (linger.ms 5, batching, fetch.max.bytes 50 MiB,
        # acks all + idempotence); Quix's max_partition_buffer_size stays at its default 10000.
    )
    config = TopicConfig(num_partitions=args.partitions, replication_factor=1)
    source = app.topic(args.input, key_deserializer="str", value_deserializer="json",
                       timestamp_extractor=event_time if args.workload == "w3" else None)
    sdf = app.dataframe(source)

    def seen(click: dict[str, Any]) -> None:
        tally.seen(click["amount"])
        if tally.count == args.events:
            done.set()

    if args.workload == "w1":
        sink = app.topic(args.output, key_serializer="str", value_serializer="json", config=config)

        def transform(click: dict[str, Any]) -> dict[str, Any]:
            seen(click)
            return enrich(click)

        sdf = sdf.apply(transform)
        sdf.to_topic(sink)
    elif args.workload == "w2":
        good = app.topic(args.output, key_serializer="str", value_serializer="json", config=config)
        bad = app.topic(args.output + INVALID_SUFFIX, key_serializer="str", value_serializer="json", config=config)
        known = profiles()

        sdf = sdf.update(seen)
        valid_rows = sdf.filter(lambda click: valid(click, known))
        valid_rows = valid_rows.apply(lambda click: enrich_profile(click, known[click["user_id"]]))
        valid_rows.to_topic(good)
        invalid_rows = sdf.filter(lambda click: not valid(click, known))
        invalid_rows.to_topic(bad)
    else:
        sdf = sdf.update(seen)
        sdf = sdf.group_by(lambda click: f"{click['user_id']}|{click['event_type']}", name="user_event")
        sdf = sdf.tumbling_window(duration_ms=WINDOW_MS, grace_ms=GRACE_MS, name="w3_totals").agg(
            count=Count(), amount=Sum("amount"), latency=Mean("latency"),
        ).final()
    return app


def main() -> None:
    args = parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    tally = Tally()
    done = threading.Event()
    app = build_app(args, tally, done)
    outcome: dict[str, Any] = {}

    def watch() -> None:
        deadline = time.monotonic() + args.timeout
        try:
            if not done.wait(args.timeout):
                raise TimeoutError(f"{tally.count:,} of {args.events:,} records processed within {args.timeout:.0f}s")
            log(f"quix: {tally.count:,} records processed in {tally.last - tally.first:.2f}s; waiting for commits")
            outcome["committed_at"] = asyncio.run(wait_committed(
                args.broker, args.app_id, args.input, args.partitions, max(1.0, deadline - time.monotonic())))
            for topic in app._topic_manager.repartition_topics:  # no public accessor
                # under exactly-once the last offset of a repartition partition is a transaction marker
                # that a consumer's commit never passes: the group is done at end - 1 there
                slack = 1 if args.guarantee == "exactly_once" else 0
                outcome["committed_at"] = asyncio.run(wait_committed(
                    args.broker, args.app_id, topic, args.partitions, max(1.0, deadline - time.monotonic()), slack))
        except Exception as exc:
            outcome["error"] = exc
        finally:
            app.stop()

    watcher = threading.Thread(target=watch, name="bench-watcher", daemon=True)
    watcher.start()
    try:
        app.run()
    except Exception as exc:
        log(f"quix: the application failed: {exc!r}")
        sys.exit(1)
    if "error" in outcome or "committed_at" not in outcome:
        log(f"quix: {outcome.get('error', 'the application stopped before the N-th record')}")
        sys.exit(1)
    report("quixstreams", args, tally, outcome["committed_at"])


if __name__ == "__main__":
    main()

"""What every peer program of the side-by-side benchmark accepts and prints (grey, raw aiokafka, ...).

    PROGRAM --broker 127.0.0.1:9092 --input TOPIC --output TOPIC --workload w1|w2|w3
            --guarantee at_least_once|exactly_once --events N --app-id ID --state-dir DIR
            [--commit-interval 1.0] [--timeout 600]

The program processes the first N records of the input topic (bench_runtime's click
events), waits until its consumer group's committed offsets reach the end of the
input, and prints one JSON line: system, workload, guarantee, events,
seconds_processed (first to N-th record), seconds_committed (first record to the
commit of the last), events_per_s (N / seconds_committed), processed_events_per_s,
checksum (the sum of ``amount``). Logs go to stderr. This module has only the
standard library and aiokafka, so the peers' own environments can import it too.

The workloads (every peer implements them the same way, in its own idiom):

- w1 consume -> enrich (``cents``, ``purchase``) -> produce to --output, keyed by user id.
- w2 consume -> validate -> enrich from an in-process lookup of user profiles -> produce.
  A click is valid when its user has a profile (99 of every 100 users do: see ``profiles``),
  its amount is not negative, its event type is known and its page starts with "/". Valid
  clicks gain ``segment``, ``country`` and ``cents`` and go to --output; the others go, as they
  came, to ``{output}-invalid`` (the dead letters). Both keyed by user id.
- w3 the case study's windowed aggregation: 1-minute tumbling windows on the ``timestamp``
  field, grace 300 s, per [user_id, event_type], count / sum(amount) / avg(latency), in RocksDB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

WORKLOADS = ("w1", "w2", "w3")
INVALID_SUFFIX = "-invalid"
USERS = 10_000  # the data set's user ids (bench_runtime.click_events): u0 .. u9999
EVENT_TYPES = ("click", "view", "purchase", "scroll", "hover")  # in the order the data set draws from
SEGMENTS = ("new", "casual", "regular", "vip")
COUNTRIES = ("de", "fr", "us", "gb", "jp", "br", "in", "ng")
GUARANTEES = ("at_least_once", "exactly_once")


def parse_args(argv: list[str] | None = None, *, extra: dict[str, Any] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="127.0.0.1:9092")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--workload", choices=WORKLOADS, required=True)
    parser.add_argument("--guarantee", choices=GUARANTEES, default="at_least_once")
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--commit-interval", type=float, default=1.0)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600.0)
    for name, default in (extra or {}).items():
        parser.add_argument(f"--{name}", default=default, type=type(default))
    return parser.parse_args(argv)


@dataclass
class Tally:
    """First and last record times, the count and the checksum, filled in by the processing code."""

    count: int = 0
    checksum: float = 0.0
    first: float = 0.0
    last: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def seen(self, amount: float, n: int = 1) -> None:
        if not self.count:
            self.first = time.perf_counter()
        self.count += n
        self.checksum += amount
        self.last = time.perf_counter()


def enrich(click: dict[str, Any]) -> dict[str, Any]:
    """W1's transform, for programs working on dicts (grey uses the same fields on a Struct)."""
    return {**click, "cents": round(click["amount"] * 100), "purchase": click["event_type"] == "purchase"}


def profiles() -> dict[str, dict[str, str]]:
    """w2's lookup table: a profile for every user id u<i> except those with i % 100 == 99."""
    return {f"u{i}": {"segment": SEGMENTS[i % 4], "country": COUNTRIES[i % 8]}
            for i in range(USERS) if i % 100 != 99}


def valid(click: dict[str, Any], known: dict[str, dict[str, str]]) -> bool:
    """w2's validation, for programs working on dicts."""
    return (click["user_id"] in known and click["amount"] >= 0 and click["event_type"] in EVENT_TYPES
            and click["page"].startswith("/"))


def enrich_profile(click: dict[str, Any], profile: dict[str, str]) -> dict[str, Any]:
    """w2's enrichment of a valid click, for programs working on dicts."""
    return {**click, **profile, "cents": round(click["amount"] * 100)}


async def wait_committed(broker: str, group: str, topic: str, partitions: int, timeout: float,
                         slack: int = 0) -> float:
    """Poll until the group's committed offsets reach the topic's end (less ``slack``: a transaction
    marker at the end of a topic the system writes itself is never passed by a commit); returns that
    moment (perf_counter). A partition that never had a record counts as committed at 0."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    probe = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await probe.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while True:
            committed = [await probe.committed(tp) or 0 for tp in tps]
            if all(c >= ends[tp] - slack for c, tp in zip(committed, tps, strict=True)):
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group} did not commit the end of {topic} within {timeout:.0f}s")
            await asyncio.sleep(0.01)
    finally:
        await probe.stop()


async def create_topics(broker: str, names: list[str], partitions: int) -> None:
    """Create output topics for programs whose system does not (existing ones are fine)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        existing = await admin.list_topics()
        missing = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
        if missing:
            await admin.create_topics(missing)
    finally:
        await admin.close()


def output_topics(args: argparse.Namespace) -> list[str]:
    """The topics a workload writes: w1 the output, w2 also the dead letters, w3 none (state only)."""
    return {"w1": [args.output], "w2": [args.output, args.output + INVALID_SUFFIX]}.get(args.workload, [])


def report(system: str, args: argparse.Namespace, tally: Tally, committed_at: float) -> None:
    """Print the one JSON line of the contract."""
    processed = tally.last - tally.first
    committed = committed_at - tally.first
    print(json.dumps({
        "system": system, "workload": args.workload, "guarantee": args.guarantee, "events": tally.count,
        "seconds_processed": round(processed, 4), "seconds_committed": round(committed, 4),
        "events_per_s": round(tally.count / committed, 1),
        "processed_events_per_s": round(tally.count / processed, 1) if processed > 0 else None,
        "checksum": tally.checksum, **tally.extra,
    }), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)

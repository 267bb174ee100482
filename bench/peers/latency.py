"""End-to-end latency of a peer: produce at a steady rate, time when each result becomes visible.

The driver starts the peer on a fresh, empty input topic, waits until the peer's consumer
group is ``Stable`` with the input's partitions assigned (and 2 s more), then produces
``rate * seconds`` click events at ``rate`` events/s, each carrying its send time (``time.time()``)
in its ``timestamp`` field. A ``read_committed`` consumer on the peer's output topic notes when
each result arrives: latency = arrival - send time, which includes the peer's commit interval
under exactly-once (results are invisible until their transaction commits) and the probe's own
fetch wait (``fetch_max_wait_ms=5``). The producer and the probe run in the driver's process.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from bench_runtime import log, produce_at_rate

SETTLE_S = 2.0


async def wait_stable(broker: str, group: str, timeout: float) -> float:
    """Wait until the group is Stable with members; returns how long that took (the peer's start-up)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            described = await admin.describe_consumer_groups([group])
            if described and described[0].groups:
                _, _, state, _, _, members, *_ = described[0].groups[0]
                if state == "Stable" and members:
                    return time.monotonic() - started
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    raise TimeoutError(f"consumer group {group} did not become Stable within {timeout:.0f}s")


async def collect(broker: str, topic: str, partitions: int, expected: int, timeout: float,
                  ready: asyncio.Event) -> list[float]:
    """Arrival - send time of each record of ``topic`` as read_committed sees it, until ``expected``."""
    decode = msgspec.json.Decoder(dict[str, Any]).decode
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, isolation_level="read_committed",
                                enable_auto_commit=False, fetch_max_wait_ms=5)
    await consumer.start()
    latencies: list[float] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ready.set()
        deadline = time.monotonic() + timeout
        while len(latencies) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.time()
                latencies.extend(now - decode(r.value)["timestamp"] for r in records if r.value)
    finally:
        await consumer.stop()
    return latencies


def percentiles(latencies: list[float]) -> dict[str, Any]:
    if len(latencies) < 2:
        return {"samples": len(latencies)}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"samples": len(latencies), "p50_ms": round(cuts[49] * 1000, 1), "p99_ms": round(cuts[98] * 1000, 1),
            "max_ms": round(max(latencies) * 1000, 1)}


async def probe(broker: str, group: str, source: str, output: str, partitions: int, *, n: int, expected: int,
                rate: float, size: int, timeout: float) -> dict[str, Any]:
    """Wait for the peer, feed it n events at ``rate``, and measure ``expected`` results on ``output``."""
    startup = await wait_stable(broker, group, timeout)
    await asyncio.sleep(SETTLE_S)
    ready = asyncio.Event()
    collecting = asyncio.ensure_future(collect(broker, output, partitions, expected, timeout, ready))
    await ready.wait()
    await produce_at_rate(broker, source, n, rate, size)
    latencies = await collecting
    if len(latencies) < expected:
        log(f"    only {len(latencies):,} of {expected:,} results became visible within {timeout:.0f}s")
    return {"startup_s": round(startup, 1), "rate": rate, **percentiles(latencies)}

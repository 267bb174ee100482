"""Count the records of a topic as a read_committed consumer sees them (to check a peer's w1 output).

    .cache/peers-venv/bin/python bench/peers/count_topic.py --broker 127.0.0.1:9092 TOPIC

Prints the count of records (aborted transactional records and control markers are not counted)
and how many offsets the topic spans: a topic written only in committed transactions spans more
offsets than it has records (one commit marker per transaction and partition), a topic written
without transactions exactly as many.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    # the consumer has no public call that fetches one topic's partitions; its client has
    return [TopicPartition(topic, p) for p in sorted(await consumer._client._wait_on_metadata(topic))]


async def count(broker: str, topic: str, idle: float) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = await partitions(consumer, topic)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)  # the last stable offsets under read_committed
        n, pending = 0, {tp for tp in parts if ends[tp] > 0}
        quiet_since = time.monotonic()
        while pending:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if batch:
                quiet_since = time.monotonic()
                n += sum(len(records) for records in batch.values())
                pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
                continue
            # Nothing more to read: a partition whose last offset is a transaction's commit marker
            # stays one short of its end (the consumer does not step over a trailing control record).
            pending = {tp for tp in pending if await consumer.position(tp) < ends[tp] - 1}
            if pending and time.monotonic() - quiet_since > idle:
                raise RuntimeError(f"{topic}: no records for {idle}s with {len(pending)} partitions short of their end")
        return n
    finally:
        await consumer.stop()


async def span(broker: str, topic: str) -> int:
    """The sum of the partitions' end offsets (read_uncommitted: markers and aborted records included)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await partitions(consumer, topic)
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="127.0.0.1:9092")
    parser.add_argument("--idle", type=float, default=5.0, help="give up after this long without records")
    parser.add_argument("topic")
    args = parser.parse_args()
    records = asyncio.run(count(args.broker, args.topic, args.idle))
    print(f"{records} records in {asyncio.run(span(args.broker, args.topic))} offsets")


if __name__ == "__main__":
    main()

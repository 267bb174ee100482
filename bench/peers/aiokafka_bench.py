"""The raw aiokafka loop as a peer (the Python client's own limit; the contract is in contract.py).

    .venv/bin/python bench/peers/aiokafka_bench.py --input bench-clicks-100000-500-8 --output out-1 \
        --workload w1 --events 100000 --app-id raw-1 --state-dir /tmp/raw-1

w1 only, at least once: ``getmany`` → msgspec decode → enrich → ``send`` (lz4, linger 5 ms,
like grey's producer) → commit every 1,000 records after a producer flush. There is no
hand-written exactly-once or windowed variant: that would be writing a stream processor.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_runtime import FETCH_MAX_BYTES, MAX_POLL_RECORDS, Click

from peers.contract import Tally, create_topic, parse_args, report, wait_committed
from peers.grey_bench import Enriched, enriched


async def main() -> None:
    args = parse_args()
    if args.workload != "w1" or args.guarantee != "at_least_once":
        raise SystemExit("raw-aiokafka implements w1 at_least_once only")
    await create_topic(args.broker, args.output, args.partitions)
    consumer = AIOKafkaConsumer(args.input, bootstrap_servers=args.broker, group_id=args.app_id,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_poll_records=MAX_POLL_RECORDS, fetch_max_bytes=FETCH_MAX_BYTES)
    producer = AIOKafkaProducer(bootstrap_servers=args.broker, acks="all", enable_idempotence=True,
                                linger_ms=5, compression_type="lz4")
    decode, encode = msgspec.json.Decoder(Click).decode, msgspec.json.Encoder().encode
    tally = Tally()
    positions: dict[TopicPartition, int] = {}
    since_commit = 0
    await consumer.start()
    await producer.start()
    try:
        deadline = time.monotonic() + args.timeout
        while tally.count < args.events:
            for tp, messages in (await consumer.getmany(timeout_ms=500, max_records=MAX_POLL_RECORDS)).items():
                total = 0.0
                for message in messages:
                    click = decode(message.value)
                    out: Enriched = enriched(click)
                    await producer.send(args.output, encode(out), key=message.key)
                    total += click.amount
                tally.seen(total, len(messages))
                positions[tp] = messages[-1].offset + 1
                since_commit += len(messages)
            if since_commit >= 1000:
                since_commit = 0
                await producer.flush()  # what the events sent is durable before their offsets
                await consumer.commit(dict(positions))
            if time.monotonic() > deadline:
                raise SystemExit(f"raw-aiokafka: {tally.count:,} of {args.events:,} events in {args.timeout:.0f}s")
        await producer.flush()
        await consumer.commit(dict(positions))
        committed_at = await wait_committed(args.broker, args.app_id, args.input, args.partitions, args.timeout)
    finally:
        await producer.stop()
        await consumer.stop()
    report("raw-aiokafka", args, tally, committed_at)


if __name__ == "__main__":
    asyncio.run(main())

"""The raw aiokafka loop as a peer (the Python client's own limit; the contract is in contract.py).

    .venv/bin/python bench/peers/aiokafka_bench.py --input bench-clicks-100000-500-8 --output out-1 \
        --workload w1 --events 100000 --app-id raw-1 --state-dir /tmp/raw-1

w1 and w2, at least once: ``getmany`` → msgspec decode into the same ``Click`` Struct grey uses →
the transform → ``send`` with grey's producer settings (lz4, linger 5 ms, 512 KiB batches, acks=all
with idempotence).
Offsets are committed every 1,000 records, once the deliveries of what was sent before them are
acknowledged: that runs as a background task with at most one in flight (as grey's committer
does), so the loop never stops to wait. There is no exactly-once or windowed variant: that would
be writing a stream processor.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_runtime import FETCH_MAX_BYTES, MAX_POLL_RECORDS, Click

from grey.transport import ClientSettings
from peers.contract import INVALID_SUFFIX, Tally, create_topics, output_topics, parse_args, report, wait_committed
from peers.grey_bench import enriched, profiled, w2_profiles


async def main() -> None:
    args = parse_args()
    if args.workload not in ("w1", "w2") or args.guarantee != "at_least_once":
        raise SystemExit("raw-aiokafka implements w1 and w2 at_least_once only")
    await create_topics(args.broker, output_topics(args), args.partitions)
    consumer = AIOKafkaConsumer(args.input, bootstrap_servers=args.broker, group_id=args.app_id,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_poll_records=MAX_POLL_RECORDS, fetch_max_bytes=FETCH_MAX_BYTES)
    grey_producer = ClientSettings(group_id=args.app_id)
    producer = AIOKafkaProducer(bootstrap_servers=args.broker, acks="all", enable_idempotence=True,
                                linger_ms=grey_producer.linger_ms, max_batch_size=grey_producer.batch_size,
                                compression_type=grey_producer.compression_type)
    decode, encode = msgspec.json.Decoder(Click).decode, msgspec.json.Encoder().encode
    known = w2_profiles()
    output, invalid = args.output, args.output + INVALID_SUFFIX
    tally = Tally()
    positions: dict[TopicPartition, int] = {}
    deliveries: list[Awaitable[object]] = []
    committing: asyncio.Task[None] | None = None

    async def commit(sent: list[Awaitable[object]], offsets: dict[TopicPartition, int]) -> None:
        await asyncio.gather(*sent)  # what these offsets' records sent is acknowledged
        await consumer.commit(offsets)

    await consumer.start()
    await producer.start()
    try:
        deadline = time.monotonic() + args.timeout
        while tally.count < args.events:
            for tp, messages in (await consumer.getmany(timeout_ms=500, max_records=MAX_POLL_RECORDS)).items():
                total = 0.0
                for message in messages:
                    click = decode(message.value)
                    if args.workload == "w1":
                        deliveries.append(await producer.send(output, encode(enriched(click)), key=message.key))
                    else:
                        better = profiled(click, known)
                        if better is None:
                            deliveries.append(await producer.send(invalid, message.value, key=message.key))
                        else:
                            deliveries.append(await producer.send(output, encode(better), key=message.key))
                    total += click.amount
                tally.seen(total, len(messages))
                positions[tp] = messages[-1].offset + 1
            if len(deliveries) >= 1000 and (committing is None or committing.done()):
                if committing is not None:
                    await committing  # raises what a failed commit raised
                committing = asyncio.ensure_future(commit(deliveries, dict(positions)))
                deliveries = []
            if time.monotonic() > deadline:
                raise SystemExit(f"raw-aiokafka: {tally.count:,} of {args.events:,} events in {args.timeout:.0f}s")
        if committing is not None:
            await committing
        await commit(deliveries, dict(positions))
        committed_at = await wait_committed(args.broker, args.app_id, args.input, args.partitions, args.timeout)
    finally:
        await producer.stop()
        await consumer.stop()
    report("raw-aiokafka", args, tally, committed_at)


if __name__ == "__main__":
    asyncio.run(main())

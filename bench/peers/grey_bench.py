"""grey as a peer of the side-by-side benchmark (the contract is in contract.py).

    .venv/bin/python bench/peers/grey_bench.py --input bench-clicks-100000-500-8 --output out-1 \
        --workload w1 --guarantee exactly_once --events 100000 --app-id grey-1 --state-dir /tmp/grey-1 [--api batch]

w1 sends one enriched record per click and w2 one validated and profiled record (or a dead
letter) per click: ``--api event`` with ``async for click in stream`` and ``topic.send``,
``--api batch`` with ``stream.batches(max=--batch-size)`` (1,000 by default) and
``topic.send_many``; w3 is the case study's windowed
aggregation (``update_many`` over batches, RocksDB). Settings: grey's defaults for
the guarantee, ``commit_interval`` from the command line, ``tune_gc()`` as
``grey worker`` applies it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for the shared data set

from bench_runtime import Click
from bench_tables import totals_table

import grey
from grey.worker import tune_gc
from peers.contract import (
    EVENT_TYPES,
    INVALID_SUFFIX,
    Tally,
    log,
    parse_args,
    profiles,
    report,
    wait_committed,
)


class Enriched(Click):
    """A click with w1's two added fields."""

    cents: int
    purchase: bool


def enriched(c: Click) -> Enriched:
    return Enriched(user_id=c.user_id, event_type=c.event_type, amount=c.amount, latency=c.latency,
                    timestamp=c.timestamp, page=c.page, pad=c.pad, cents=round(c.amount * 100),
                    purchase=c.event_type == "purchase")


class Profiled(Click):
    """A valid click with w2's profile fields."""

    segment: str
    country: str
    cents: int


def w2_profiles() -> dict[str, tuple[str, str]]:
    """contract.profiles() as (segment, country) pairs."""
    return {user: (p["segment"], p["country"]) for user, p in profiles().items()}


def profiled(c: Click, known: dict[str, tuple[str, str]]) -> Profiled | None:
    """w2 on a Struct: the profiled click, or None when it is not valid."""
    profile = known.get(c.user_id)
    if profile is None or c.amount < 0 or c.event_type not in EVENT_TYPES or not c.page.startswith("/"):
        return None
    return Profiled(user_id=c.user_id, event_type=c.event_type, amount=c.amount, latency=c.latency,
                    timestamp=c.timestamp, page=c.page, pad=c.pad, segment=profile[0], country=profile[1],
                    cents=round(c.amount * 100))


def build(args: Any, tally: Tally, done: asyncio.Event) -> grey.App:
    app = grey.App(args.app_id, broker=f"kafka://{args.broker}", processing_guarantee=args.guarantee,
                   commit_interval=args.commit_interval, data_dir=args.state_dir)
    source = app.topic(args.input, key_type=str, value_type=Click, partitions=args.partitions)
    n, size = args.events, args.batch_size

    def count(amount: float, k: int) -> None:
        tally.seen(amount, k)
        if tally.count >= n:
            done.set()

    if args.workload == "w1":
        out = app.topic(args.output, key_type=str, value_type=Enriched, partitions=args.partitions)
        if args.api == "event":
            @app.agent(source, name="w1-event")
            async def w1_event(stream: grey.Stream) -> None:
                async for click in stream:
                    await out.send(enriched(click), key=click.user_id)
                    count(click.amount, 1)
        else:
            @app.agent(source, name="w1-batch")
            async def w1_batch(stream: grey.Stream) -> None:
                async for batch in stream.batches(max=size):
                    await out.send_many([(click.user_id, enriched(click)) for click in batch])
                    count(sum(c.amount for c in batch), len(batch))
    elif args.workload == "w2":
        good = app.topic(args.output, key_type=str, value_type=Profiled, partitions=args.partitions)
        bad = app.topic(args.output + INVALID_SUFFIX, key_type=str, value_type=Click, partitions=args.partitions)
        known = w2_profiles()
        if args.api == "event":
            @app.agent(source, name="w2-event")
            async def w2_event(stream: grey.Stream) -> None:
                async for click in stream:
                    better = profiled(click, known)
                    if better is None:
                        await bad.send(click, key=click.user_id)
                    else:
                        await good.send(better, key=click.user_id)
                    count(click.amount, 1)
        else:
            @app.agent(source, name="w2-batch")
            async def w2_batch(stream: grey.Stream) -> None:
                async for batch in stream.batches(max=size):
                    valid, invalid = [], []
                    for click in batch:
                        better = profiled(click, known)
                        if better is None:
                            invalid.append((click.user_id, click))
                        else:
                            valid.append((click.user_id, better))
                    await good.send_many(valid)
                    if invalid:
                        await bad.send_many(invalid)
                    count(sum(c.amount for c in batch), len(batch))
    else:
        totals = totals_table(app, "rocksdb://")

        def user_and_type(click: Click) -> tuple[str, str]:
            return click.user_id, click.event_type

        @app.agent(source, name="w3")
        async def w3(stream: grey.Stream) -> None:
            async for batch in stream.batches(max=size):
                totals.update_many(batch, key=user_and_type)
                count(sum(c.amount for c in batch), len(batch))
    return app


async def main() -> None:
    args = parse_args(extra={"api": "event", "batch-size": 1000})
    tally, done = Tally(), asyncio.Event()
    app = build(args, tally, done)
    async with app.running() as runtime:
        tune_gc()
        assert runtime.crashed is not None
        waiter = asyncio.ensure_future(done.wait())
        await asyncio.wait([waiter, runtime.crashed], timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()
            raise SystemExit(f"grey: {tally.count:,} of {args.events:,} events in {args.timeout:.0f}s")
        committed_at = await wait_committed(args.broker, args.app_id, args.input, args.partitions, args.timeout)
    log(f"grey stopped after {tally.count:,} events")
    report("grey-batch" if args.workload == "w3" else f"grey-{args.api}", args, tally, committed_at)


if __name__ == "__main__":
    asyncio.run(main())

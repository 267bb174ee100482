"""Exactly-once: running totals per user, enriched events out, and the totals in Redis.

    grey worker -A examples.realtime_totals      # Kafka and Redis from scripts/services

Each click adds its amount to the user's total in a table, goes out enriched
with that total, and the total is upserted into Redis under
``realtime:{user_id}``. With ``processing_guarantee="exactly_once"`` a worker
killed at any moment leaves no enriched event twice (for ``read_committed``
readers), no amount counted twice in the table, and Redis never ahead of
what the table committed for long: see docs/exactly-once.md.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import grey
from grey.sinks.redis import RedisSink


class Click(grey.Record):
    user_id: str
    event_type: str
    amount: float


app = grey.App("realtime-totals", processing_guarantee="exactly_once", commit_interval=1.0)
clicks = app.topic("clicks", key_type=str, value_type=Click, partitions=8)
enriched = app.topic("clicks-enriched", key_type=str, value_type=dict, partitions=8)
totals = app.Table("user-totals", default=float, key_type=str, value_type=float)
realtime = RedisSink(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                     key_pattern="realtime:{user_id}", expire=3600)


@app.agent(clicks, sink=[realtime])
async def running_totals(stream: grey.Stream) -> AsyncIterator[dict[str, Any]]:
    async for click in stream:
        total = totals[click.user_id] + click.amount
        totals[click.user_id] = total
        await enriched.send({"user_id": click.user_id, "event_type": click.event_type,
                             "amount": click.amount, "total": total}, key=click.user_id)
        yield {"user_id": click.user_id, "total": total}  # staged for Redis, written at the checkpoint

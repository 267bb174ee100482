"""The chaos workload: forward each event enriched, sum amounts per user in a table, totals to Redis.

Configured from the environment by the driver (:mod:`grey.chaos.eos`):
``CHAOS_RUN`` (names the topics and Redis keys), ``CHAOS_PARTITIONS``,
``CHAOS_GUARANTEE``, ``CHAOS_REDIS`` and ``CHAOS_COMMIT_INTERVAL``; the broker
and data directory come as usual from ``GREY_BROKER`` and ``GREY_DATA_DIR``.

Each effect is of a kind that shows a repeat or a loss: an output record per
event id, a running total per user (a repeated event adds twice), and the
same total upserted into Redis with the partition group's marker.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import grey
from grey.sinks.redis import RedisSink

RUN = os.environ.get("CHAOS_RUN", "chaos")
PARTITIONS = int(os.environ.get("CHAOS_PARTITIONS", "8"))

app = grey.App(
    f"{RUN}-app",
    processing_guarantee=os.environ.get("CHAOS_GUARANTEE", "exactly_once"),
    commit_interval=float(os.environ.get("CHAOS_COMMIT_INTERVAL", "0.5")),
)
events = app.topic(f"{RUN}-events", key_type=str, value_type=dict, partitions=PARTITIONS)
enriched = app.topic(f"{RUN}-enriched", key_type=str, value_type=dict, partitions=PARTITIONS)
totals = app.Table("totals", default=int, key_type=str, value_type=int)
redis_totals = RedisSink(os.environ.get("CHAOS_REDIS", "redis://127.0.0.1:6379/0"),
                         key_pattern=f"chaos:{RUN}:{{user}}", expire=3600)


@app.agent(events, name="chaos", sink=[redis_totals])
async def process(stream: grey.Stream) -> AsyncIterator[dict[str, Any]]:
    async for event in stream:
        user = event["user"]
        total = totals[user] + event["amount"]
        totals[user] = total
        await enriched.send({"id": event["id"], "user": user, "amount": event["amount"], "total": total},
                            key=user)
        yield {"user": user, "total": total}

"""The chaos run in the suite: SIGKILL workers mid-stream, then check every event, total and Redis key.

The same run, longer: ``scripts/chaos-eos --events 200000 --duration 60``.
"""

from __future__ import annotations

import json
from pathlib import Path

import redis.asyncio as aioredis

from grey.chaos.eos import ChaosConfig, ChaosReport, check, create_topics, expected_totals, run, workload
from grey.transport import ClientSettings, TopicSpec, open_transport


async def test_killing_workers_loses_and_repeats_nothing(kafka_url: str, redis_url: str, tmp_path: Path) -> None:
    cfg = ChaosConfig(events=20_000, partitions=8, workers=3, users=500, duration=20, kill_every=3,
                      broker=kafka_url, redis=redis_url, work_dir=tmp_path)
    report = await run(cfg)
    print(report.line())
    assert report.kills >= 3, "the run must actually kill workers mid-stream"
    assert report.caught_up
    assert report.ok, f"{report.line()}: {report.examples}"
    assert report.outputs == cfg.events


async def test_the_checker_sees_duplicates_losses_and_wrong_totals(kafka_url: str, redis_url: str,
                                                                   tmp_path: Path) -> None:
    """Without this, a checker that reads nothing would report zeros too."""
    cfg = ChaosConfig(events=50, partitions=2, users=5, broker=kafka_url, redis=redis_url, work_dir=tmp_path)
    events = workload(cfg)
    totals = expected_totals(events)
    await create_topics(cfg)
    producer = open_transport(kafka_url).producer(ClientSettings(group_id=""))
    admin = open_transport(kafka_url).admin(ClientSettings(group_id=""))
    await admin.start()
    await admin.create_topics([TopicSpec(f"{cfg.run}-app-totals-changelog", partitions=2)])
    await admin.stop()
    await producer.start()
    outputs = [e for e in events if e[0] != 7] + [events[3]]  # id 7 lost, id 3 twice
    for i, user, amount in outputs:
        await producer.send(f"{cfg.run}-enriched", json.dumps({"id": i, "user": user, "amount": amount}).encode(),
                            key=user.encode())
    users = sorted(totals)
    for user in users:
        wrong = totals[user] + (1 if user == users[0] else 0)  # one total off by one
        await producer.send(f"{cfg.run}-app-totals-changelog", json.dumps(wrong).encode(), key=user.encode())
    await producer.flush()
    await producer.stop()
    client = aioredis.from_url(redis_url)
    for user in users[1:]:  # one user missing in Redis
        await client.set(f"chaos:{cfg.run}:{user}", json.dumps({"user": user, "total": totals[user]}))
    await client.aclose()
    report = ChaosReport(events=cfg.events)
    await check(cfg, events, report)
    assert (report.duplicates, report.lost, report.table_mismatch, report.redis_mismatch) == (1, 1, 1, 1)
    assert not report.ok

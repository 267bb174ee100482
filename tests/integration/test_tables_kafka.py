"""Tables against the real broker: rebuild after losing the local store, handover, retention."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

import grey
from grey.tables import Table
from grey.transport import TopicSpec
from grey.transport.kafka import bootstrap_servers
from tests.integration.workers import create_topics
from tests.waiting import wait_for


def counting_app(unique: str, kafka_url: str, data_dir: Path) -> tuple[grey.App, grey.Topic, Table]:
    app = grey.App(unique, broker=kafka_url, data_dir=str(data_dir), checkpoint_interval=100,
                   session_timeout_ms=6000, heartbeat_interval_ms=1000)
    words = app.topic(f"{unique}-words", key_type=str, value_type=str, partitions=4)
    counts = app.Table("counts", default=int, key_type=str, value_type=int)

    @app.agent(words, name="count")
    async def count(stream: grey.Stream) -> None:
        async for word in stream:
            counts[word] += 1

    return app, words, counts


async def produce(words: grey.Topic, n: int, start: int = 0) -> Counter[str]:
    expected: Counter[str] = Counter()
    for i in range(start, start + n):
        word = f"w{i % 53}"
        await words.send(word, key=word)
        expected[word] += 1
    return expected


async def test_deleted_rocksdb_directory_is_rebuilt_from_kafka(kafka_url: str, unique: str, tmp_path: Path) -> None:
    app, words, counts = counting_app(unique, kafka_url, tmp_path)
    async with app.running() as runtime:
        expected = await produce(words, 2000)
        await wait_for(lambda: runtime.processed == 2000, 60)
        before = counts.as_dict()
    assert before == dict(expected)
    shutil.rmtree(tmp_path / unique)
    again, _, rebuilt = counting_app(unique, kafka_url, tmp_path)
    async with again.running() as runtime:
        await wait_for(lambda: len(runtime.partitions) == 4 and not runtime.recovering, 60)
        assert rebuilt.as_dict() == before


async def test_state_moves_with_its_partitions(kafka_url: str, unique: str, tmp_path: Path) -> None:
    a, words, counts_a = counting_app(unique, kafka_url, tmp_path / "a")
    b, _, counts_b = counting_app(unique, kafka_url, tmp_path / "b")
    async with a.running() as ra:
        await wait_for(lambda: len(ra.partitions) == 4, 60)
        expected = await produce(words, 1000)
        await wait_for(lambda: ra.processed == 1000, 60)
        async with b.running() as rb:
            await wait_for(lambda: len(ra.partitions) == 2 and len(rb.partitions) == 2
                           and not ra.recovering and not rb.recovering, 60)
            assert {**counts_a.as_dict(), **counts_b.as_dict()} == dict(expected)
            expected += await produce(words, 1000, start=1000)
            await wait_for(lambda: sum(counts_a.as_dict().values()) + sum(counts_b.as_dict().values()) == 2000, 60)
        # b left: a takes its partitions back, with b's state from the changelog
        await wait_for(lambda: len(ra.partitions) == 4 and not ra.recovering, 60)
        assert counts_a.as_dict() == dict(expected)


async def test_changelog_trimmed_by_retention_still_recovers(kafka_url: str, unique: str, tmp_path: Path) -> None:
    changelog = f"{unique}-counts-changelog"
    # a changelog that also expires by retention, so records can be removed from its start
    await create_topics(kafka_url, TopicSpec(changelog, 4, config={"cleanup.policy": "compact,delete"}))
    first, words, _ = counting_app(unique, kafka_url, tmp_path / "first")
    async with first.running() as runtime:
        expected = await produce(words, 1000)
        await wait_for(lambda: runtime.processed == 1000, 60)
    after_first = await read_changelog(kafka_url, changelog)
    # a second worker (own store) goes on; the first one's store falls behind
    second, words2, _ = counting_app(unique, kafka_url, tmp_path / "second")
    async with second.running() as runtime:
        expected += await produce(words2, 1000, start=1000)
        await wait_for(lambda: runtime.processed == 1000, 60)
        await runtime.commit()
        # one more update of every key, in a checkpoint of its own, so each key's latest value is at the end
        expected += await produce(words2, 53, start=2000)
        await wait_for(lambda: runtime.processed == 1053, 60)
        await runtime.commit()
    full = await read_changelog(kafka_url, changelog)

    # retention removes every record the first store has seen, and one more
    cut = {}
    for partition, records in full.items():
        seen = len(after_first[partition])
        assert len(records) > seen + 1
        cut[TopicPartition(changelog, partition)] = RecordsToDelete(records[seen + 1][0])
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(kafka_url))
    await admin.start()
    try:
        await admin.delete_records(cut)
    finally:
        await admin.close()

    third, _, recovered = counting_app(unique, kafka_url, tmp_path / "first")
    async with third.running() as runtime:
        await wait_for(lambda: len(runtime.partitions) == 4 and not runtime.recovering, 60)
        assert all(r.rebuilt for r in runtime.recovered if r.table == "counts")
        assert len(runtime.recovered) == 4
        assert recovered.as_dict() == dict(expected)  # the latest value of every key survived the cut


async def read_changelog(kafka_url: str, topic: str, partitions: int = 4) -> dict[int, list[tuple[int, str, str]]]:
    """(offset, key, value) of every record left in each partition of a changelog."""
    from grey.transport import TP, open_transport
    from tests.integration.workers import settings

    reader = open_transport(kafka_url).consumer(settings(""))
    await reader.start()
    try:
        tps = [TP(topic, p) for p in range(partitions)]
        reader.assign(tps)
        ends = await reader.end_offsets(tps)
        out: dict[int, list[tuple[int, str, str]]] = {p: [] for p in range(partitions)}
        for tp in tps:
            reader.seek(tp, (await reader.beginning_offsets([tp]))[tp])
        while any([await reader.position(tp) < ends[tp] for tp in tps]):
            for tp, messages in (await reader.getmany(timeout_ms=500, max_records=None)).items():
                out[tp.partition].extend((m.offset, m.key.decode(), m.value.decode()) for m in messages)
        return out
    finally:
        await reader.stop()




async def test_kill_9_and_restart_keeps_every_table_update(kafka_url: str, unique: str, tmp_path: Path) -> None:
    from tests.integration.test_workers import assigned_count
    from tests.integration.workers import end_total, produce_json, start_worker, wait_until

    count, keys = 6000, 50
    env = {"APP_ID": unique, "SRC": f"{unique}-in", "DELAY": "0.1"}  # about 6 s of work per worker
    app_spec = "tests.integration.apps.tabled:app"
    a = start_worker(app_spec, {**env, "GREY_DATA_DIR": str(tmp_path / "a")}, tmp_path / "a.log")
    b = start_worker(app_spec, {**env, "GREY_DATA_DIR": str(tmp_path / "b")}, tmp_path / "b.log")
    changelog = f"{unique}-seen-changelog"
    try:
        async def split() -> bool:
            return assigned_count(a) == 4 and assigned_count(b) == 4

        await wait_until(split, 60, "two workers with 4 partitions each")
        await create_topics(kafka_url, TopicSpec(f"{unique}-in", 8))
        await produce_json(kafka_url, f"{unique}-in", [(f"k{i % keys}", {"id": i}) for i in range(count)])

        async def some_state() -> bool:
            return await end_total(kafka_url, changelog, 8) >= 60  # a few checkpoints of 50 keys

        await wait_until(some_state, 60, "table updates in the changelog")
        a.kill()  # mid-stream: its buffer and uncommitted offsets are lost
        # Its disk too: whichever partitions the restarted worker gets, it (or the survivor, for the
        # killed one's) must rebuild them from the changelog.
        shutil.rmtree(tmp_path / "a")
        a = start_worker(app_spec, {**env, "GREY_DATA_DIR": str(tmp_path / "a")}, tmp_path / "a2.log")

        expected = {f"k{k}": list(range(k, count, keys)) for k in range(keys)}

        async def complete() -> bool:
            latest = await latest_values(kafka_url, changelog)
            return latest == expected

        await wait_until(complete, 180, "every id in the table")
    finally:
        for worker in (a, b):
            if worker.proc.poll() is None:
                assert worker.terminate() == 0, worker.output()[-3000:]
    log = a.output() + b.output()
    assert "recovered" in log  # the restarted worker (or the survivor) replayed the changelog


async def latest_values(kafka_url: str, changelog: str) -> dict[str, list[int]]:
    import json

    records = await read_changelog(kafka_url, changelog, partitions=8)
    return {key: json.loads(value) for part in records.values() for _, key, value in part}

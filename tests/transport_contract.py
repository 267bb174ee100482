"""Behaviour grey relies on from a broker, checked on memory:// and on a real Kafka alike.

Each ``check_*`` takes a transport URL and a unique prefix; tests in
``tests/unit/transport`` run them on the memory broker and tests in
``tests/integration`` on the local Kafka, so the memory broker is held to
what Kafka really does.
"""

from __future__ import annotations

import asyncio
import contextlib

import grey
from grey.transport import TP, ClientSettings, TopicSpec, open_transport
from grey.transport._murmur2 import partition_for_key


async def noop(tps: set[TP]) -> None:
    """A rebalance callback that does nothing."""


def settings(group: str, **kw: object) -> ClientSettings:
    base = ClientSettings(group_id=group, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    for k, v in kw.items():
        setattr(base, k, v)
    return base


async def create(url: str, *specs: TopicSpec) -> None:
    admin = open_transport(url).admin(settings("admin"))
    await admin.start()
    try:
        await admin.create_topics(list(specs))
        await admin.create_topics(list(specs))  # creating again is not an error
    finally:
        await admin.stop()


async def drain(consumer, want: int, timeout: float = 30.0) -> list:  # type: ignore[no-untyped-def]
    got: list = []  # type: ignore[type-arg]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < want and loop.time() < deadline:
        for messages in (await consumer.getmany(timeout_ms=200, max_records=None)).values():
            got.extend(messages)
    return got


async def check_round_trip_keys_headers_partitioning(url: str, prefix: str) -> None:
    topic = f"{prefix}-rt"
    await create(url, TopicSpec(topic, partitions=4))
    transport = open_transport(url)
    producer = transport.producer(settings(prefix))
    await producer.start()
    keys = [f"user-{i}".encode() for i in range(20)]
    for i, key in enumerate(keys):
        await producer.send(topic, b'{"n":%d}' % i, key=key, headers=[("trace", b"t%d" % i)])
    await producer.flush()
    await producer.stop()

    consumer = transport.consumer(settings(f"{prefix}-g"))
    assigned: list[set[TP]] = []

    async def on_assigned(tps: set[TP]) -> None:
        assigned.append(tps)

    async def on_revoked(tps: set[TP]) -> None:
        return None

    consumer.subscribe([topic], on_revoked, on_assigned)
    await consumer.start()
    try:
        got = await drain(consumer, len(keys))
    finally:
        await consumer.stop()
    assert len(got) == len(keys)
    assert assigned and assigned[-1] == {TP(topic, p) for p in range(4)}
    for message in got:
        i = int(message.key.decode().split("-")[1])
        assert message.value == b'{"n":%d}' % i
        assert list(message.headers) == [("trace", b"t%d" % i)]
        assert message.partition == partition_for_key(message.key, 4)  # Kafka's default partitioner


async def check_commit_and_resume(url: str, prefix: str) -> None:
    topic = f"{prefix}-cr"
    await create(url, TopicSpec(topic, partitions=1))
    transport = open_transport(url)
    producer = transport.producer(settings(prefix))
    await producer.start()
    for i in range(10):
        await producer.send(topic, str(i).encode(), partition=0)
    await producer.flush()
    await producer.stop()

    group = f"{prefix}-g"
    first = transport.consumer(settings(group))
    first.subscribe([topic], noop, noop)
    await first.start()
    got = await drain(first, 10)
    assert [m.offset for m in got] == list(range(10))
    await first.commit({TP(topic, 0): 6})
    assert await first.committed(TP(topic, 0)) == 6
    await first.stop()

    second = transport.consumer(settings(group))
    second.subscribe([topic], noop, noop)
    await second.start()
    try:
        again = await drain(second, 4)
    finally:
        await second.stop()
    assert [m.value for m in again] == [b"6", b"7", b"8", b"9"]


async def check_group_splits_partitions(url: str, prefix: str) -> None:
    topic = f"{prefix}-split"
    await create(url, TopicSpec(topic, partitions=8))
    transport = open_transport(url)
    owned: dict[str, set[TP]] = {"a": set(), "b": set()}

    def listeners(name: str):  # type: ignore[no-untyped-def]
        async def on_assigned(tps: set[TP]) -> None:
            owned[name] = set(tps)

        async def on_revoked(tps: set[TP]) -> None:
            owned[name] = set()

        return on_revoked, on_assigned

    group = f"{prefix}-g"
    a = transport.consumer(settings(group))
    b = transport.consumer(settings(group))
    a.subscribe([topic], *listeners("a"))
    b.subscribe([topic], *listeners("b"))
    await a.start()
    await b.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40
        while loop.time() < deadline:
            # aiokafka rebalances inside getmany's background coordination; poll both
            await asyncio.gather(a.getmany(timeout_ms=100), b.getmany(timeout_ms=100))
            if len(owned["a"]) == 4 and len(owned["b"]) == 4:
                break
        assert len(owned["a"]) == 4 and len(owned["b"]) == 4, owned
        assert owned["a"] | owned["b"] == {TP(topic, p) for p in range(8)}
    finally:
        await b.stop()
    deadline = loop.time() + 40
    while loop.time() < deadline and len(owned["a"]) < 8:
        await a.getmany(timeout_ms=100)
    try:
        assert len(owned["a"]) == 8  # the leaver's partitions move to the one left
    finally:
        await a.stop()


async def check_read_committed_hides_aborted(url: str, prefix: str) -> None:
    topic = f"{prefix}-txn"
    await create(url, TopicSpec(topic, partitions=1))
    transport = open_transport(url)
    producer = transport.producer(settings(prefix), transactional_id=f"{prefix}-tx")
    await producer.start()
    await producer.begin_transaction()
    await producer.send(topic, b"aborted", partition=0)
    await producer.abort_transaction()
    await producer.begin_transaction()
    await producer.send(topic, b"committed", partition=0)
    await producer.commit_transaction()
    await producer.stop()

    committed = transport.consumer(settings(f"{prefix}-rc", isolation_level="read_committed"))
    committed.subscribe([topic], noop, noop)
    await committed.start()
    try:
        got = await drain(committed, 1, timeout=15)
        got += await drain(committed, 1, timeout=1)  # nothing more may arrive
    finally:
        await committed.stop()
    assert [m.value for m in got] == [b"committed"]
    # the two control markers took offsets, as in Kafka: data at 0 and 2
    assert got[0].offset == 2


async def check_commit_inside_revocation(url: str, prefix: str) -> None:
    """A member can commit the partitions it is giving up from its revocation callback."""
    topic = f"{prefix}-rev"
    await create(url, TopicSpec(topic, partitions=2))
    transport = open_transport(url)
    group = f"{prefix}-g"
    a = transport.consumer(settings(group))
    owned: set[TP] = set()
    committed_in_callback: dict[TP, int] = {}

    async def a_assigned(tps: set[TP]) -> None:
        owned.update(tps)

    async def a_revoked(tps: set[TP]) -> None:
        offsets = {tp: 7 for tp in tps}
        await a.commit(offsets)
        committed_in_callback.update(offsets)
        owned.clear()

    a.subscribe([topic], a_revoked, a_assigned)
    await a.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(owned) < 2 and loop.time() < deadline:
        await a.getmany(timeout_ms=100)
    assert len(owned) == 2
    b = transport.consumer(settings(group))
    b.subscribe([topic], noop, noop)
    await b.start()
    try:
        deadline = loop.time() + 40
        while not committed_in_callback and loop.time() < deadline:
            await asyncio.gather(a.getmany(timeout_ms=100), b.getmany(timeout_ms=100))
        assert committed_in_callback == {TP(topic, 0): 7, TP(topic, 1): 7}
        assert await b.committed(TP(topic, 0)) == 7
    finally:
        await b.stop()
        await a.stop()


async def check_send_many_returns_the_last_offset(url: str, prefix: str) -> None:
    topic = f"{prefix}-many"
    await create(url, TopicSpec(topic, partitions=2))
    transport = open_transport(url)
    producer = transport.producer(settings(prefix))
    await producer.start()
    try:
        await producer.send(topic, b"first", partition=1)
        records = [(f"k{i}".encode(), b"x" * (i * 300)) for i in range(200)]  # more than one batch
        last = await (await producer.send_many(topic, 1, records))
        await producer.flush()
    finally:
        await producer.stop()
    assert last == 200  # offset 0 was "first"

    reader = transport.consumer(settings(""))
    await reader.start()
    try:
        reader.assign([TP(topic, 1)])
        reader.seek(TP(topic, 1), 0)
        got = await drain(reader, 201)
    finally:
        await reader.stop()
    assert [m.key for m in got[1:]] == [k for k, _ in records]
    assert got[-1].offset == 200


async def check_topic_send_many_places_records_like_send(url: str, prefix: str) -> None:
    """``Topic.send_many`` puts every keyed record where ``Topic.send`` puts it, in the same order per
    partition, and the records without a key together in one partition, in order."""
    app = grey.App(prefix, broker=url)
    one = app.topic(f"{prefix}-one", value_type=dict, partitions=4)
    many = app.topic(f"{prefix}-many", value_type=dict, partitions=4)
    keyed = [(f"user-{i % 37}", {"n": i}) for i in range(300)]
    keyless = [(None, {"n": 300 + i}) for i in range(5)]
    async with app.running(consume=False):
        for key, value in keyed:
            await one.send(value, key=key)
        await (await many.send_many(keyed + keyless))
    reader = open_transport(url).consumer(settings(""))
    await reader.start()
    try:
        tps = [TP(t.name, p) for t in (one, many) for p in range(4)]
        reader.assign(tps)
        for tp in tps:
            reader.seek(tp, 0)
        got = await drain(reader, 2 * len(keyed) + len(keyless))
    finally:
        await reader.stop()

    def placed(topic: str, keys: bool) -> dict[int, list[bytes]]:
        out: dict[int, list[bytes]] = {}
        for m in got:
            if m.topic == topic and (m.key is not None) == keys:
                out.setdefault(m.partition, []).append(m.value)
        return out

    assert placed(one.name, True) == placed(many.name, True)
    assert len(placed(one.name, True)) > 1, "keys spread over partitions (so the check can fail)"
    assert list(placed(many.name, False).values()) == [[b'{"n":%d}' % (300 + i) for i in range(5)]]


async def check_offsets_commit_only_with_the_transaction(url: str, prefix: str) -> None:
    topic = f"{prefix}-txo"
    await create(url, TopicSpec(topic, partitions=1))
    transport = open_transport(url)
    group = f"{prefix}-g"
    producer = transport.producer(settings(prefix), transactional_id=f"{prefix}-tx")
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send(topic, b"a", partition=0)
        await producer.send_offsets_to_transaction({TP(topic, 0): 5}, group)
        await producer.abort_transaction()
        await producer.begin_transaction()
        await producer.send(topic, b"b", partition=0)
        await producer.send_offsets_to_transaction({TP(topic, 0): 7}, group)
        await producer.commit_transaction()
    finally:
        await producer.stop()
    probe = transport.consumer(settings(group))
    await probe.start()
    try:
        assert await probe.committed(TP(topic, 0)) == 7  # the aborted 5 never took effect
    finally:
        await probe.stop()


async def check_newer_producer_fences_the_older(url: str, prefix: str) -> None:
    """Zombie fencing: a second producer with the same transactional id makes the first one fail."""
    from grey.transport import ProducerFencedError

    topic = f"{prefix}-fence"
    await create(url, TopicSpec(topic, partitions=1))
    transport = open_transport(url)
    old = transport.producer(settings(prefix), transactional_id=f"{prefix}-group-0")
    await old.start()
    await old.begin_transaction()
    await (await old.send(topic, b"zombie", partition=0))
    new = transport.producer(settings(prefix), transactional_id=f"{prefix}-group-0")
    await new.start()
    try:
        try:
            await old.commit_transaction()
        except ProducerFencedError:
            pass
        else:
            raise AssertionError("the older producer committed after a newer one took its transactional id")
        await new.begin_transaction()
        await new.send(topic, b"owner", partition=0)
        await new.commit_transaction()
    finally:
        await new.stop()
        with contextlib.suppress(Exception):  # a fenced producer may complain on the way out
            await old.stop()
    reader = transport.consumer(settings(f"{prefix}-r", isolation_level="read_committed"))

    reader.subscribe([topic], noop, noop)
    await reader.start()
    try:
        got = await drain(reader, 1, timeout=15)
        got += await drain(reader, 1, timeout=1)
    finally:
        await reader.stop()
    assert [m.value for m in got] == [b"owner"]  # the zombie's write was aborted

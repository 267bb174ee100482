"""Start `grey worker` processes and read what they produced, for the integration tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from grey.transport import TP, ClientSettings, TopicSpec, open_transport
from tests.conftest import KAFKA_URL
from tests.transport_contract import noop

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.handle.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_worker(app_spec: str, env: dict[str, str], log: Path) -> Worker:
    full = {**os.environ, **env, "PYTHONUNBUFFERED": "1", "GREY_BROKER": KAFKA_URL,
            "GREY_SESSION_TIMEOUT_MS": "6000", "GREY_HEARTBEAT_INTERVAL_MS": "1000"}
    handle = log.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "grey", "worker", "-A", app_spec, "--loglevel", "info"],
        cwd=ROOT, env=full, stdout=handle, stderr=subprocess.STDOUT,
    )
    return Worker(proc, log, handle)


def settings(group: str, **kw: Any) -> ClientSettings:
    base = ClientSettings(group_id=group)
    for k, v in kw.items():
        setattr(base, k, v)
    return base


async def create_topics(url: str, *specs: TopicSpec) -> None:
    admin = open_transport(url).admin(settings("test-admin"))
    await admin.start()
    try:
        await admin.create_topics(list(specs))
    finally:
        await admin.stop()


async def produce_json(url: str, topic: str, records: list[tuple[str, Any]]) -> None:
    producer = open_transport(url).producer(settings("test-producer"))
    await producer.start()
    try:
        for key, value in records:
            raw = value if isinstance(value, bytes) else json.dumps(value).encode()
            await producer.send(topic, raw, key=key.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def read_all(url: str, topic: str, group: str, until: int, timeout: float) -> list[dict[str, Any]]:
    """Read ``topic`` from the start until ``until`` distinct ids came (or the timeout), then drain."""
    consumer = open_transport(url).consumer(settings(group, isolation_level="read_committed"))

    consumer.subscribe([topic], noop, noop)
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        ids: set[Any] = set()
        while len(ids) < until and time.monotonic() < deadline:
            found = await consumer.getmany(timeout_ms=500, max_records=None)
            for messages in found.values():
                for m in messages:
                    if m.value is not None:
                        out.append(json.loads(m.value))
                        ids.add(out[-1]["id"])
        found = await consumer.getmany(timeout_ms=1000, max_records=None)  # late duplicates
        for messages in found.values():
            out.extend(json.loads(m.value) for m in messages if m.value is not None)
    finally:
        await consumer.stop()
    return out


async def committed_offsets(url: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    consumer = open_transport(url).consumer(settings(group))
    await consumer.start()
    try:
        return {p: await consumer.committed(TP(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


async def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.5)


async def end_total(url: str, topic: str, partitions: int) -> int:
    """How many records (plus markers) the topic holds: the sum of its end offsets."""
    consumer = open_transport(url).consumer(settings("test-probe"))
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TP(topic, p) for p in range(partitions)])
        return sum(ends.values())
    finally:
        await consumer.stop()

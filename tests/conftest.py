"""Shared fixtures: unique names, and the local services (a missing one is a failure, never a skip)."""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import hypothesis.internal.observability  # noqa: F401
import pytest

from grey.transport.memory import MemoryBroker

# hypothesis is imported up front (above) rather than by its pytest plugin at the end of the session:
# on CPython 3.11.7, compiling a module shortly after aiokafka's fencing errors can fail with "AST
# constructor recursion depth mismatch" (a CPython bug, reproduced outside pytest), which broke the
# summary of runs that fence a producer.
_counter = itertools.count()


@pytest.fixture
def unique() -> str:
    """A short name unique to this test run, for topics, groups and apps."""
    return f"t{uuid.uuid4().hex[:8]}{next(_counter)}"


@pytest.fixture
def memory_url(unique: str) -> Iterator[str]:
    yield f"memory://{unique}"
    MemoryBroker.forget(unique)


KAFKA_URL = os.environ.get("GREY_TEST_KAFKA", f"kafka://127.0.0.1:{os.environ.get('GREY_KAFKA_PORT', '9092')}")
REDIS_URL = f"redis://127.0.0.1:{os.environ.get('GREY_REDIS_PORT', '6379')}/0"


def _reachable(url: str) -> bool:
    first = url.removeprefix("kafka://").split(",")[0]
    parsed = urlparse(f"//{first}")
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 9092), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_url() -> str:
    if not _reachable(KAFKA_URL):
        pytest.fail(f"no Kafka at {KAFKA_URL}: start it with `scripts/services up kafka` (make test does)")
    return KAFKA_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    except OSError:
        pytest.fail(f"no Redis at {REDIS_URL}: start it with `scripts/services up redis` (make test does)")
    return REDIS_URL

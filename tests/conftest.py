"""Shared fixtures: unique names, and the broker URLs of the local services."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator

import pytest

from grey.transport.memory import MemoryBroker

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

"""grey's partitioner places keys exactly where aiokafka's (and so Java's) default partitioner does."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from grey.transport import _murmur2
from grey.transport._murmur2 import default_partitioner


def test_the_remembered_hashes_place_keys_as_aiokafka_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_murmur2, "_HASHES_MAX", 500)  # so the memory also starts over during the test
    monkeypatch.setattr(_murmur2, "_HASHES", {})
    theirs = DefaultPartitioner()
    keys = [f"user-{i}".encode() for i in range(1200)] + [b"", b"a", b"ab", b"abc", "ü∂".encode()]
    for partitions in (1, 3, 8, 32):
        every = list(range(partitions))
        for key in keys + keys[:300]:  # seen again: answered from the memory
            assert default_partitioner(key, every, every) == theirs(key, every, every), (key, partitions)
    assert 0 < len(_murmur2._HASHES) <= 500


def test_a_key_less_record_goes_to_an_available_partition() -> None:
    assert all(default_partitioner(None, [0, 1, 2, 3], [2]) == 2 for _ in range(20))
    assert {default_partitioner(None, [0, 1, 2, 3], []) for _ in range(200)} == {0, 1, 2, 3}

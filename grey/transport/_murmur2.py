"""Kafka's default partitioner hash, so the memory broker places keys as Kafka does."""

from __future__ import annotations

import random
from collections.abc import Sequence

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """32-bit murmur2 with Kafka's seed, returned as a signed int like Java."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length - (length & 3)
    for i in range(0, whole, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


# Keys repeat (users, devices, accounts), and the pure-Python hash costs microseconds per record:
# the hash of each key seen is kept, up to this many keys, then the memory starts over.
_HASHES: dict[bytes, int] = {}
_HASHES_MAX = 100_000


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a non-null key."""
    h = _HASHES.get(key)
    if h is None:
        if len(_HASHES) >= _HASHES_MAX:
            _HASHES.clear()
        h = _HASHES[key] = murmur2(key) & 0x7FFFFFFF
    return h % partitions


def default_partitioner(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """aiokafka's DefaultPartitioner (Kafka's murmur2 placement) with the hashes remembered."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[partition_for_key(key, len(all_partitions))]

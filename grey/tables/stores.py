"""Byte stores: the innermost layer of a table, one per table partition.

A store moves bytes only; codecs and the changelog live in the layers above.
Every write is a batch applied atomically together with the changelog offset
it reflects, so after a crash the data and the offset never disagree.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

_OFFSET_KEY = b"changelog-offset"
_META = "grey-meta"


class ByteStore(Protocol):
    """Bytes in, bytes out, for one partition of one table."""

    def get(self, key: bytes) -> bytes | None: ...
    def write(self, changes: Mapping[bytes, bytes | None], offset: int | None) -> None:
        """Apply puts (bytes) and deletes (None) and record ``offset``, all or nothing."""
        ...
    def offset(self) -> int | None:
        """The changelog offset of the last applied write, if any."""
        ...
    def items(self) -> Iterator[tuple[bytes, bytes]]: ...
    def __len__(self) -> int: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


class MemoryStore:
    """A dict; state lives as long as the process (recovery rebuilds it from the changelog)."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._offset: int | None = None

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def write(self, changes: Mapping[bytes, bytes | None], offset: int | None) -> None:
        for key, value in changes.items():
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value
        if offset is not None:
            self._offset = offset

    def offset(self) -> int | None:
        return self._offset

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(self._data.items()))

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
        self._offset = None

    def close(self) -> None:
        return None


def _rocksdict() -> Any:
    try:
        import rocksdict
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("store rocksdb:// needs rocksdict: pip install 'grey[rocksdb]'") from None
    return rocksdict


class RocksStore:
    """One RocksDB database per table partition (rocksdict), offset kept in a metadata column family."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open()

    def _open(self) -> None:
        rd = self._rd = _rocksdict()
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        families = rd.Rdict.list_cf(str(path), rd.Options(raw_mode=True)) if (path / "CURRENT").exists() else []
        options = rd.Options(raw_mode=True)
        options.create_if_missing(True)
        options.create_missing_column_families(True)
        self._db = rd.Rdict(str(path), options=options,
                            column_families={cf: rd.Options(raw_mode=True) for cf in families if cf != "default"})
        if _META not in families:
            self._db.create_column_family(_META, rd.Options(raw_mode=True))
        self._meta = self._db.get_column_family(_META)
        self._meta_handle = self._db.get_column_family_handle(_META)

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def write(self, changes: Mapping[bytes, bytes | None], offset: int | None) -> None:
        batch = self._rd.WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if offset is not None:
            batch.put(_OFFSET_KEY, str(offset).encode(), self._meta_handle)
        self._db.write(batch)

    def offset(self) -> int | None:
        raw = self._meta.get(_OFFSET_KEY)
        return None if raw is None else int(raw)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items():
            assert isinstance(key, bytes)  # raw mode: keys and values are bytes
            yield key, value

    def __len__(self) -> int:
        return sum(1 for _ in self._db.keys())  # noqa: SIM118 - an Rdict iterates items, not keys

    def clear(self) -> None:
        """Drop all data and the offset (a rebuild from the changelog follows)."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._open()

    def close(self) -> None:
        # the column-family objects hold the database open; release them first
        del self._meta, self._meta_handle
        self._db.close()


def read_store(path: Path) -> tuple[list[tuple[bytes, bytes]], int | None]:
    """Everything in a RocksDB table store, read-only, so a running worker may hold it open."""
    rd = _rocksdict()
    families = rd.Rdict.list_cf(str(path), rd.Options(raw_mode=True))
    db = rd.Rdict(str(path), options=rd.Options(raw_mode=True), access_type=rd.AccessType.read_only(),
                  column_families={cf: rd.Options(raw_mode=True) for cf in families if cf != "default"})
    try:
        items = [(k, v) for k, v in db.items()]
        offset = None
        if _META in families:
            meta = db.get_column_family(_META)
            raw = meta.get(_OFFSET_KEY)
            offset = None if raw is None else int(raw)
            del meta
        return items, offset
    finally:
        db.close()


def open_store(url: str, path: Path) -> ByteStore:
    """``rocksdb://`` (at ``path``) or ``memory://``."""
    if url.startswith("rocksdb://"):
        return RocksStore(path)
    if url.startswith("memory://"):
        return MemoryStore()
    raise ValueError(f"store {url!r}: use rocksdb:// or memory://")

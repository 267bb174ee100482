from pathlib import Path

import pytest

from grey.tables.stores import ByteStore, MemoryStore, RocksStore


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ByteStore:
    return MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "p0")


def test_batch_write_with_offset(store: ByteStore) -> None:
    assert store.offset() is None
    store.write({b"a": b"1", b"b": b"2"}, 10)
    store.write({b"a": None, b"c": b"3"}, 12)
    assert store.get(b"a") is None and store.get(b"b") == b"2" and store.get(b"c") == b"3"
    assert store.offset() == 12
    assert sorted(store.items()) == [(b"b", b"2"), (b"c", b"3")]
    assert len(store) == 2
    store.clear()
    assert store.offset() is None and len(store) == 0
    store.close()


def test_rocksdb_keeps_data_and_offset_across_reopen(tmp_path: Path) -> None:
    first = RocksStore(tmp_path / "p3")
    first.write({b"k": b"v"}, 41)
    first.close()
    again = RocksStore(tmp_path / "p3")
    assert again.get(b"k") == b"v" and again.offset() == 41
    again.close()


def test_rocksdb_offset_is_not_a_user_key(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "p0")
    store.write({b"changelog-offset": b"mine"}, 5)
    assert store.get(b"changelog-offset") == b"mine" and store.offset() == 5
    assert list(store.items()) == [(b"changelog-offset", b"mine")]
    store.close()


def test_read_only_view_beside_an_open_store(tmp_path: Path) -> None:
    from grey.tables.stores import read_store

    store = RocksStore(tmp_path / "p0")  # a worker holds it open
    store.write({b"a": b"1"}, 7)
    assert read_store(tmp_path / "p0") == ([(b"a", b"1")], 7)
    store.write({b"b": b"2"}, 8)
    assert read_store(tmp_path / "p0") == ([(b"a", b"1"), (b"b", b"2")], 8)
    store.close()

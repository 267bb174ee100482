"""Tables: partitioned, changelogged key-value state that agents use like a dict.

Layers, innermost first: a byte store per partition (RocksDB or memory), the
changelog (a compacted topic ``{app_id}-{table}-changelog``, partition p for
table partition p), a write buffer, and the codecs, which only this layer uses.
Writes go to the buffer; at each checkpoint the runtime sends the buffer's
latest value per key to the changelog, waits for the broker, then writes the
buffer into the store in one batch with the changelog offset it reflects, and
only then commits the source offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from grey.agents.stream import current_stream
from grey.codecs import Codec, codec_for
from grey.config import Settings
from grey.tables.aggregations import Aggregation
from grey.tables.display import render
from grey.tables.errors import TableError
from grey.tables.stores import ByteStore, open_store
from grey.tables.windows import OnClose, TimeOf, WindowedTable
from grey.topics import Topic
from grey.transport._murmur2 import partition_for_key
from grey.transport.base import Producer

log = logging.getLogger(__name__)

_MISSING = object()
_DELETED = object()


class TableOwner(Protocol):
    """What a table needs of its app: settings, and a way to declare its changelog topic."""

    @property
    def conf(self) -> Settings: ...

    def topic(self, name: str, *, partitions: int | None = ..., compacted: bool = ...,
              key_serializer: str | Codec | None = ..., value_serializer: str | Codec | None = ...) -> Topic: ...


class PartitionListener(Protocol):
    """Something built on a table (a windowed view) that keeps per-partition state of its own."""

    def partition_ready(self, number: int) -> None: ...
    def partition_closed(self, number: int) -> None: ...
    async def tick(self) -> None: ...


class _Partition:
    """One owned partition: its store, the write buffer, and the buffer being flushed."""

    __slots__ = ("buffer", "encoded", "flushing", "store")

    def __init__(self, store: ByteStore) -> None:
        self.store = store
        self.buffer: dict[bytes, Any] = {}  # encoded key -> value object, or _DELETED
        self.flushing: dict[bytes, Any] = {}  # the buffer of the checkpoint in progress (still readable)
        self.encoded: dict[bytes, bytes | None] = {}  # the same, encoded, for the store

    def lookup(self, key_bytes: bytes, loads: Callable[[bytes], Any]) -> Any:
        """Buffer, then the checkpoint in progress, then the store; ``_MISSING`` if absent or deleted."""
        value = self.buffer.get(key_bytes, _MISSING)
        if value is _MISSING:
            value = self.flushing.get(key_bytes, _MISSING)
        if value is _MISSING:
            raw = self.store.get(key_bytes)
            return _MISSING if raw is None else loads(raw)
        return _MISSING if value is _DELETED else value


class Table:
    """``app.Table("totals", default=int)``: a dict per partition, backed by a store and a changelog."""

    def __init__(
        self,
        app: TableOwner,
        name: str,
        *,
        default: Callable[[], Any] | None = None,
        key_type: Any = None,
        value_type: Any = None,
        partitions: int | None = None,
        store: str = "rocksdb://",
    ) -> None:
        self.app = app
        self.name = name
        self.default = default
        self.partitions = partitions  # None: like the source topic of the agents (set when the app starts)
        self.store_url = store
        if not (store.startswith("rocksdb://") or store.startswith("memory://")):
            raise ValueError(f"table {name!r}: store {store!r} must be rocksdb:// or memory://")
        self.key_codec = codec_for(key_type)
        self.value_codec = codec_for(value_type)
        self.changelog = app.topic(
            f"{app.conf.id}-{name}-changelog", partitions=partitions, compacted=True,
            key_serializer="raw", value_serializer="raw",
        )
        self._owned: dict[int, _Partition] = {}
        self.listener: PartitionListener | None = None

    def __repr__(self) -> str:
        return f"<Table {self.name} partitions={self.partitions} store={self.store_url}>"

    # -- where the data of a key is -----------------------------------

    def use_partitions(self, count: int) -> None:
        """Fix the partition count (to the source topic's) before the changelog is created."""
        self.partitions = count
        self.changelog.partitions = count

    def store_path(self, partition: int) -> Path:
        return Path(self.app.conf.data_dir) / self.app.conf.id / "tables" / self.name / str(partition)

    def partition_of(self, key_bytes: bytes) -> int:
        """The partition of the event in hand; outside an agent, where the default partitioner puts the key."""
        stream = current_stream.get()
        number = stream.partition if stream is not None else None
        if number is None:
            number = partition_for_key(key_bytes, self.partitions or self.app.conf.topic_partitions)
        return number

    def _partition(self, key_bytes: bytes) -> _Partition:
        number = self.partition_of(key_bytes)
        part = self._owned.get(number)
        if part is None:
            raise TableError(
                f"table {self.name!r}: partition {number} is not owned by this worker "
                "(tables are read and written from agents on a co-partitioned topic, or for keys whose "
                "partition this worker owns)"
            )
        return part

    # -- windowed views ---------------------------------------------------

    def tumbling(
        self, size: float, *, grace: float = 0.0, expires: float | None = None,
        aggregations: Mapping[str, Aggregation], time: TimeOf = None, on_close: OnClose = None,
        idle_close: float | None = 10.0,
    ) -> WindowedTable:
        """Windows of ``size`` seconds, one after another (see :class:`WindowedTable`)."""
        return self.hopping(size, size, grace=grace, expires=expires, aggregations=aggregations,
                            time=time, on_close=on_close, idle_close=idle_close)

    def hopping(
        self, size: float, step: float, *, grace: float = 0.0, expires: float | None = None,
        aggregations: Mapping[str, Aggregation], time: TimeOf = None, on_close: OnClose = None,
        idle_close: float | None = 10.0,
    ) -> WindowedTable:
        """Windows of ``size`` seconds starting every ``step`` seconds (they overlap)."""
        return WindowedTable(self, size=size, step=step, grace=grace, expires=expires,
                             aggregations=aggregations, time=time, on_close=on_close, idle_close=idle_close)

    # -- by partition and encoded key (for views built on the table) ---

    def read(self, number: int, key_bytes: bytes) -> Any:
        """The value under an encoded key in an owned partition, or None."""
        value = self._owned[number].lookup(key_bytes, self.value_codec.loads)
        return None if value is _MISSING else value

    def write(self, number: int, key_bytes: bytes, value: Any) -> None:
        """Set (or with None, delete) an encoded key in an owned partition."""
        self._owned[number].buffer[key_bytes] = _DELETED if value is None else value

    def raw_items(self, number: int) -> Iterator[tuple[bytes, Any]]:
        """Encoded keys and values of an owned partition, buffer included, in key order."""
        part = self._owned[number]
        overlay = {**part.flushing, **part.buffer}
        loads = self.value_codec.loads
        merged: dict[bytes, Any] = {k: loads(v) for k, v in part.store.items() if k not in overlay}
        for key_bytes, value in overlay.items():
            if value is not _DELETED:
                merged[key_bytes] = value
        for key_bytes in sorted(merged):
            yield key_bytes, merged[key_bytes]

    # -- the dict interface -------------------------------------------

    def _lookup(self, key: Any) -> Any:
        key_bytes = self.key_codec.dumps(key)
        return self._partition(key_bytes).lookup(key_bytes, self.value_codec.loads)

    def __getitem__(self, key: Any) -> Any:
        value = self._lookup(key)
        if value is _MISSING:
            if self.default is None:
                raise KeyError(key)
            return self.default()
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        value = self._lookup(key)
        return default if value is _MISSING else value

    def __contains__(self, key: Any) -> bool:
        return self._lookup(key) is not _MISSING

    def __setitem__(self, key: Any, value: Any) -> None:
        key_bytes = self.key_codec.dumps(key)
        self._partition(key_bytes).buffer[key_bytes] = value

    def __delitem__(self, key: Any) -> None:
        key_bytes = self.key_codec.dumps(key)
        self._partition(key_bytes).buffer[key_bytes] = _DELETED

    def items(self, partition: int | None = None) -> Iterator[tuple[Any, Any]]:
        """Key/value pairs of one owned partition, or of all owned partitions, buffer included."""
        loads_key = self.key_codec.loads
        for number in self.owned if partition is None else [partition]:
            for key_bytes, value in self.raw_items(number):
                yield loads_key(key_bytes), value

    def as_ansitable(self, limit: int | None = 100) -> str:
        """The owned contents as a text table (keys sorted by their encoding)."""
        if self.listener is not None and hasattr(self.listener, "as_ansitable"):
            text: str = self.listener.as_ansitable(limit)
            return text
        rows = sorted(self.items(), key=lambda kv: self.key_codec.dumps(kv[0]))
        return render(f"table {self.name} (partitions {self.owned})", ["key", "value"], rows, limit)

    def as_dict(self) -> dict[Any, Any]:
        """Everything this worker owns, as a plain dict."""
        return dict(self.items())

    # -- partitions, checkpoints and recovery (called by the runtime) --

    @property
    def owned(self) -> list[int]:
        return sorted(self._owned)

    def open_partition(self, number: int) -> ByteStore:
        part = self._owned.get(number)
        if part is None:
            part = self._owned[number] = _Partition(open_store(self.store_url, self.store_path(number)))
        return part.store

    def partition_ready(self, number: int) -> None:
        """Called by the runtime once the partition is recovered."""
        if self.listener is not None:
            self.listener.partition_ready(number)

    def close_partition(self, number: int) -> None:
        if self.listener is not None:
            self.listener.partition_closed(number)
        part = self._owned.pop(number, None)
        if part is not None:
            if part.buffer or part.flushing:
                log.warning("table %s[%d] closed with unflushed writes; the changelog replay redoes them",
                            self.name, number)
            part.store.close()

    def close(self) -> None:
        for number in list(self._owned):
            self.close_partition(number)

    def has_changes(self, number: int | None = None) -> bool:
        """Whether there are writes not yet in the store (in one partition, or in any)."""
        if number is not None:
            part = self._owned.get(number)
            return part is not None and bool(part.buffer or part.flushing)
        return any(part.buffer or part.flushing for part in self._owned.values())

    def discard_changes(self, number: int) -> None:
        """Forget a partition's writes since its last checkpoint (an aborted transaction).

        A view built on the table (windows, idempotency keys) rebuilds its own
        state from the store, which holds what the last commit left.
        """
        part = self._owned.get(number)
        if part is None:
            return
        part.buffer, part.flushing, part.encoded = {}, {}, {}
        if self.listener is not None:
            self.listener.partition_closed(number)
            self.listener.partition_ready(number)

    async def send_changes(self, producer: Producer, numbers: Iterable[int] | None = None, *,
                           more: bool = False) -> dict[int, Awaitable[int]]:
        """Start a checkpoint: move each buffer aside and send its latest values to the changelog.

        ``numbers`` limits it to some partitions (one partition group's transaction). With
        ``more``, what is already being flushed stays and the buffer's newer values join it:
        exactly-once sends a transaction's changelog in parts (the last delivery per partition,
        merged by the caller, is what :meth:`apply_changes` needs).
        """
        last: dict[int, Awaitable[int]] = {}
        encode = self.value_codec.dumps
        owned = self._owned
        for number in owned if numbers is None else [n for n in numbers if n in owned]:
            part = owned[number]
            if part.flushing and not more:  # the last checkpoint failed half-way: its writes are to be sent
                part.buffer = {**part.flushing, **part.buffer}
                part.flushing, part.encoded = {}, {}
            if not part.buffer:
                continue
            fresh, part.buffer = part.buffer, {}
            encoded = {k: None if v is _DELETED else encode(v) for k, v in fresh.items()}
            part.flushing.update(fresh)
            part.encoded.update(encoded)
            last[number] = await producer.send_many(self.changelog.name, number, list(encoded.items()))
        return last

    async def apply_changes(self, sent: dict[int, Awaitable[int]]) -> None:
        """Finish a checkpoint (after the producer flushed): write each flushed buffer with its offset."""
        for number, delivery in sent.items():
            offset = await delivery
            part = self._owned.get(number)
            if part is None:
                continue
            part.store.write(part.encoded, offset)
            part.flushing, part.encoded = {}, {}

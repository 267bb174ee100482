"""Windowed tables: tumbling and hopping windows by event time, with grace, closing and expiry.

Rules (as in Kafka Streams):

* an event at time t belongs to every window [start, start + size) that holds t;
* each partition has a *stream time*, the largest event time it has seen;
* a window is *closed* once stream time >= end + grace; an event for a closed
  window is late: it is counted (``late_events``) and not applied;
* closing emits the window's final aggregates once, to a callback or a topic;
* when a partition has had no events for ``idle_close`` seconds, its stream
  time moves on with the wall clock, so the last windows close even when
  traffic stops;
* closed windows are deleted once stream time >= end + expires.

Window state lives in the underlying table under the key (key, start), encoded
as the 8-byte big-endian start followed by the key, so a partition's windows
are ordered by time in RocksDB and in the changelog.
"""

from __future__ import annotations

import inspect
import logging
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from grey.agents.stream import Stream, current_partition, current_stream
from grey.codecs import Codec
from grey.observability.metrics import LATE_EVENTS, WINDOWS_CLOSED
from grey.tables.aggregations import Aggregation
from grey.tables.display import render
from grey.tables.errors import TableError
from grey.topics import Topic

log = logging.getLogger(__name__)

TimeOf = str | Callable[[Any], float] | None
OnClose = Callable[[Any, "Window", dict[str, Any]], Any] | Topic | None

_START = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class Window:
    """A window in seconds since the epoch: [start, end)."""

    start: float
    end: float


class WindowKeyCodec:
    """(key, start_ms) <-> 8-byte big-endian start + the key's own encoding."""

    name = "window-key"

    def __init__(self, inner: Codec) -> None:
        self.inner = inner

    def dumps(self, value: Any) -> bytes:
        key, start_ms = value
        return _START.pack(start_ms) + self.inner.dumps(key)

    def loads(self, data: bytes) -> Any:
        return self.inner.loads(data[8:]), _START.unpack_from(data)[0]

    def loads_many(self, items: Sequence[bytes | None]) -> list[Any]:
        return [None if item is None else self.loads(item) for item in items]


def window_starts(t_ms: int, size_ms: int, step_ms: int) -> list[int]:
    """Starts of the windows of size ``size_ms`` every ``step_ms`` that hold ``t_ms``."""
    start = t_ms - t_ms % step_ms
    starts = []
    while start > t_ms - size_ms and start >= 0:
        starts.append(start)
        start -= step_ms
    return starts


class WindowStorage(Protocol):
    """What a windowed view needs of its table (grey.tables.Table provides it)."""

    name: str
    key_codec: Codec
    listener: Any

    @property
    def owned(self) -> list[int]: ...
    def read(self, number: int, key_bytes: bytes) -> Any: ...
    def write(self, number: int, key_bytes: bytes, value: Any) -> None: ...
    def raw_items(self, number: int) -> Iterator[tuple[bytes, Any]]: ...


class WindowedTable:
    """Aggregates per key and window; see the module docstring for the rules."""

    def __init__(
        self,
        table: WindowStorage,
        *,
        size: float,
        step: float | None = None,
        grace: float = 0.0,
        expires: float | None = None,
        aggregations: Mapping[str, Aggregation],
        time: TimeOf = None,
        on_close: OnClose = None,
        idle_close: float | None = 10.0,
    ) -> None:
        if size <= 0 or (step is not None and not 0 < step <= size):
            raise ValueError(f"window size must be > 0 and 0 < step <= size; got size={size}, step={step}")
        if not aggregations:
            raise ValueError("a windowed table needs aggregations, e.g. {'count': grey.tables.Count()}")
        if table.listener is not None:
            raise ValueError(f"table {table.name!r} already has a windowed view")
        self.table = table
        self.size_ms = int(size * 1000)
        self.step_ms = int((step or size) * 1000)
        self.grace_ms = int(grace * 1000)
        self.expires_ms = None if expires is None else int(expires * 1000)
        self.names = list(aggregations)
        self.aggregations = list(aggregations.values())
        self._adders = [(i, agg.add) for i, agg in enumerate(self.aggregations, 1)]
        self.time_of = _time_getter(time)
        self.on_close = on_close
        self.idle_close = idle_close
        self.late_events = 0
        self.closed_windows = 0
        self._late_metric = LATE_EVENTS.labels(table.name)
        self._closed_metric = WINDOWS_CLOSED.labels(table.name)
        self._keys = WindowKeyCodec(table.key_codec)
        self._stream_time: dict[int, int] = {}
        self._open: dict[int, dict[int, set[bytes]]] = {}  # partition -> start -> encoded keys
        self._closed: dict[int, dict[int, set[bytes]]] = {}
        self._last_event: dict[int, tuple[float, int]] = {}  # partition -> (wall clock, stream time)
        self._closed_horizon: dict[int, int] = {}  # partition -> latest start of a window found closed
        self._to_emit: list[tuple[int, Any, Window, dict[str, Any]]] = []
        table.listener = self

    def __repr__(self) -> str:
        hop = "" if self.step_ms == self.size_ms else f" step={self.step_ms / 1000}"
        return f"<WindowedTable {self.table.name} size={self.size_ms / 1000}{hop} grace={self.grace_ms / 1000}>"

    # -- updating (from agents) ----------------------------------------

    def update(self, key: Any, value: Any, timestamp: float | None = None) -> bool:
        """Add ``value`` to the windows of ``key`` at its event time; False if it was late everywhere."""
        stream, number = self._stream_here("update()")
        if timestamp is None and self.time_of is not None:
            timestamp = self.time_of(value)
        elif timestamp is None:
            if stream.current_batch is not None:  # which event of the batch? only the caller knows
                raise TableError(
                    f"windowed table {self.table.name!r}: in a batch, update() needs time= on the table, "
                    "timestamp=, or update_many(batch, key=...) for the events' Kafka timestamps"
                )
            timestamp = stream.current_timestamp
        return self.add(number, key, value, int(timestamp * 1000))

    def update_many(self, values: Sequence[Any], key: Callable[[Any], Any]) -> int:
        """:meth:`update` for a batch (one partition, as ``stream.batches()`` gives); returns how many applied."""
        stream, number = self._stream_here("update_many()")
        add, time_of = self.add, self.time_of
        if time_of is not None:
            return sum(add(number, key(v), v, int(time_of(v) * 1000)) for v in values)
        batch = stream.current_batch
        if batch is None or values is not batch:
            raise TableError(f"windowed table {self.table.name!r}: update_many() without time= takes the "
                             "batch in hand, whose events carry their Kafka timestamps")
        return sum(add(number, key(v), v, m.timestamp) for v, m in zip(values, batch.messages, strict=True))

    def add(self, number: int, key: Any, value: Any, t_ms: int) -> bool:
        """:meth:`update` for an explicit partition and event time in milliseconds."""
        stream_time = self._stream_time.get(number)
        if stream_time is None or t_ms > stream_time:
            stream_time = self._stream_time[number] = t_ms
        if self.idle_close is not None:
            self._last_event[number] = (time.monotonic(), stream_time)
        applied = False
        table = self.table
        open_windows = self._open.get(number)
        if open_windows is None:
            open_windows = self._open[number] = {}
        size = self.size_ms
        starts = (t_ms - t_ms % size,) if self.step_ms == size else window_starts(t_ms, size, self.step_ms)
        key_tail = self._keys.inner.dumps(key)
        late_before = stream_time - size - self.grace_ms  # a window starting at or before this has closed
        for start in starts:
            if start <= late_before:
                self.late_events += 1
                self._late_metric.inc()
                continue
            key_bytes = _START.pack(start) + key_tail
            indexed = open_windows.get(start)
            if indexed is not None and key_bytes in indexed:
                state = table.read(number, key_bytes)
            elif start <= self._closed_horizon.get(number, -1):
                # A restart sets stream time back to a lower bound, so this window may have been
                # closed (and emitted) before it: only the stored flag can tell.
                state = table.read(number, key_bytes)
                if state is not None and state[0]:
                    self.late_events += 1
                    self._late_metric.inc()
                    continue
            else:
                state = None  # not open, not closed: a new window, no store read needed
            if state is None:
                state = [False, *(agg.initial() for agg in self.aggregations)]
                open_windows.setdefault(start, set()).add(key_bytes)
            for i, fold in self._adders:
                state[i] = fold(state[i], value)
            table.write(number, key_bytes, state)
            applied = True
        return applied

    # -- reading -------------------------------------------------------

    def results(self, state: list[Any]) -> dict[str, Any]:
        return {name: agg.result(s) for name, agg, s in zip(self.names, self.aggregations, state[1:], strict=True)}

    def get(self, key: Any, at: float, partition: int | None = None) -> dict[str, Any] | None:
        """Aggregates of the (first) window of ``key`` that holds time ``at``, or None."""
        number = partition if partition is not None else self._partition_here()
        t_ms = int(at * 1000)
        start = window_starts(t_ms, self.size_ms, self.step_ms)[-1]
        state = self.table.read(number, self._keys.dumps((key, start)))
        return None if state is None else self.results(state)

    def items(self, partition: int | None = None) -> Iterator[tuple[tuple[Any, Window], dict[str, Any]]]:
        """((key, window), aggregates) of the owned partitions, in window order per partition."""
        numbers = self.table.owned if partition is None else [partition]
        for number in numbers:
            for key_bytes, state in self.table.raw_items(number):
                key, start = self._keys.loads(key_bytes)
                yield (key, Window(start / 1000, (start + self.size_ms) / 1000)), self.results(state)

    def as_ansitable(self, limit: int | None = 100) -> str:
        """Every stored window of the owned partitions as a text table."""
        rows = [[key, window.start, window.end, *results.values()] for (key, window), results in self.items()]
        return render(f"windowed table {self.table.name}", ["key", "start", "end", *self.names], rows, limit)

    def window_of(self, key_bytes: bytes) -> tuple[Any, Window]:
        """The key and window of an encoded window key."""
        key, start = self._keys.loads(key_bytes)
        return key, Window(start / 1000, (start + self.size_ms) / 1000)

    def stream_time(self, partition: int) -> float | None:
        value = self._stream_time.get(partition)
        return None if value is None else value / 1000

    def _stream_here(self, what: str) -> tuple[Stream, int]:
        stream = current_stream.get()
        number = stream.partition if stream is not None else None
        if stream is None or number is None:
            raise TableError(f"windowed table {self.table.name!r}: {what} is called from an agent's stream")
        return stream, number

    def _partition_here(self) -> int:
        stream = current_stream.get()
        if stream is None or stream.partition is None:
            raise TableError("pass partition= when reading a windowed table outside an agent")
        return stream.partition

    # -- closing and expiry (the runtime calls tick() periodically) ----

    async def tick(self) -> None:
        now = time.monotonic()
        for number in self.table.owned:
            last = self._last_event.get(number)
            if self.idle_close is not None and last is not None and now - last[0] >= self.idle_close:
                advanced = last[1] + int((now - last[0]) * 1000)
                self._stream_time[number] = max(self._stream_time.get(number, advanced), advanced)
            self.close_due(number)
        await self._emit()

    def close_due(self, number: int) -> None:
        """Close the windows of a partition whose end + grace stream time has passed; expire old ones."""
        stream_time = self._stream_time.get(number)
        if stream_time is None:
            return
        open_windows = self._open.get(number, {})
        closed = self._closed.setdefault(number, {})
        emit = self.on_close is not None
        count = 0
        for start in sorted(s for s in open_windows if s + self.size_ms + self.grace_ms <= stream_time):
            for key_bytes in sorted(open_windows.pop(start)):
                state = self.table.read(number, key_bytes)
                if state is None or state[0]:
                    continue
                state[0] = True
                self.table.write(number, key_bytes, state)
                if emit:
                    key, _ = self._keys.loads(key_bytes)
                    window = Window(start / 1000, (start + self.size_ms) / 1000)
                    self._to_emit.append((number, key, window, self.results(state)))
                count += 1
                if self.expires_ms is not None:  # only expiry needs to find closed windows again
                    closed.setdefault(start, set()).add(key_bytes)
        if count:
            self.closed_windows += count
            self._closed_metric.inc(count)
        if self.expires_ms is not None:
            for start in sorted(s for s in closed if s + self.size_ms + self.expires_ms <= stream_time):
                for key_bytes in closed.pop(start):
                    self.table.write(number, key_bytes, None)  # a delete: store and changelog tombstone

    async def _emit(self) -> None:
        pending, self._to_emit = self._to_emit, []
        target = self.on_close
        for number, key, window, results in pending:
            token = current_partition.set(number)  # what is sent belongs to the partition's transaction
            try:
                if isinstance(target, Topic):
                    await target.send({"key": key, "start": window.start, "end": window.end, **results}, key=key)
                elif target is not None:
                    outcome = target(key, window, results)
                    if inspect.isawaitable(outcome):
                        await outcome
            finally:
                current_partition.reset(token)

    # -- partitions come and go (the table tells us) -------------------

    def partition_ready(self, number: int) -> None:
        """Rebuild the index of open and closed windows from the recovered partition."""
        open_windows: dict[int, set[bytes]] = {}
        closed: dict[int, set[bytes]] = {}
        latest = None
        horizon = -1
        for key_bytes, state in self.table.raw_items(number):
            start = _START.unpack_from(key_bytes)[0]
            if not state[0]:
                open_windows.setdefault(start, set()).add(key_bytes)
            else:
                horizon = max(horizon, start)
                if self.expires_ms is not None:
                    closed.setdefault(start, set()).add(key_bytes)
            latest = start if latest is None else max(latest, start)
        self._open[number], self._closed[number] = open_windows, closed
        self._closed_horizon[number] = horizon
        if latest is not None:  # a lower bound: some event at or after the latest start was seen
            self._stream_time[number] = max(self._stream_time.get(number, latest), latest)

    def partition_closed(self, number: int) -> None:
        for index in (self._open, self._closed, self._stream_time, self._last_event, self._closed_horizon):
            index.pop(number, None)


def _time_getter(time_of: TimeOf) -> Callable[[Any], float] | None:
    if time_of is None or callable(time_of):
        return time_of
    name = time_of

    def get(value: Any) -> float:
        return float(value[name] if isinstance(value, dict) else getattr(value, name))

    return get

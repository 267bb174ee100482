"""Windowing against a tiny reference: same closed windows, same aggregates, same late count."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from grey.codecs import StrCodec
from grey.tables import Avg, Count, Max, Min, Sum
from grey.tables.windows import Window, WindowedTable


class DictStorage:
    """The storage a windowed view needs, as a dict (no broker, no store)."""

    name = "prop"
    key_codec = StrCodec()
    listener: Any = None

    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}

    @property
    def owned(self) -> list[int]:
        return [0]

    def read(self, number: int, key_bytes: bytes) -> Any:
        return self.data.get(key_bytes)

    def write(self, number: int, key_bytes: bytes, value: Any) -> None:
        if value is None:
            self.data.pop(key_bytes, None)
        else:
            self.data[key_bytes] = value

    def raw_items(self, number: int) -> Iterator[tuple[bytes, Any]]:
        return iter(sorted(self.data.items()))


def reference(events: list[tuple[str, int, float]], size: int, step: int, grace: int) -> tuple[dict[Any, Any], int]:
    stream_time = -1
    windows: dict[tuple[str, int], list[float]] = {}
    late = 0
    for key, t, value in events:
        stream_time = max(stream_time, t)
        for start in range(0, t + 1, step):
            if not start <= t < start + size:
                continue
            if start + size + grace <= stream_time:
                late += 1
            else:
                windows.setdefault((key, start), []).append(value)
    closed = {
        (key, start): {"n": len(vs), "total": sum(vs), "mean": sum(vs) / len(vs), "low": min(vs), "high": max(vs)}
        for (key, start), vs in windows.items()
        if start + size + grace <= stream_time
    }
    return closed, late


shapes = st.sampled_from([(1000, 1000), (5000, 5000), (4000, 1000), (6000, 2000)])
events_strategy = st.lists(
    # times on a 250 ms grid (plus a few off it), so window edges and grace boundaries are hit often
    st.tuples(st.sampled_from(["a", "b", "c"]),
              st.one_of(st.integers(0, 60).map(lambda x: x * 500), st.integers(1, 60).map(lambda x: x * 500 - 1),
                        st.integers(0, 30_000)),
              st.integers(-50, 50).map(float)),
    max_size=60,
)


@settings(max_examples=1000, deadline=None)
@given(shape=shapes, grace=st.sampled_from([0, 500, 3000]), events=events_strategy,
       ticks=st.lists(st.booleans(), min_size=60, max_size=60))
def test_windows_match_the_reference(shape: tuple[int, int], grace: int, events: list[tuple[str, int, float]],
                                     ticks: list[bool]) -> None:
    size, step = shape
    storage = DictStorage()
    emitted_list: list[tuple[str, Window, dict[str, Any]]] = []
    windows = WindowedTable(
        storage, size=size / 1000, step=step / 1000, grace=grace / 1000,
        aggregations={"n": Count(), "total": Sum(), "mean": Avg(), "low": Min(), "high": Max()},
        on_close=lambda key, window, results: emitted_list.append((key, window, results)),
    )
    for (key, t, value), tick in zip(events, ticks, strict=False):
        windows.add(0, key, value, t)
        if tick:  # closing at arbitrary moments must not change any result
            windows.close_due(0)
    windows.close_due(0)
    asyncio.run(windows.tick())  # hands the closed windows to on_close
    emitted = {(key, int(w.start * 1000)): results for key, w, results in emitted_list}
    expected, late = reference(events, size, step, grace)
    assert emitted == expected
    assert windows.late_events == late
    assert len(emitted_list) == len(emitted)  # each window closed once

"""The examples do what their docs say, run on the memory broker through the test harness."""

from __future__ import annotations

import asyncio
import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(EXAMPLES))
    try:
        sys.modules.pop(name, None)
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(EXAMPLES))


async def test_windowed_clicks_emits_the_case_study_aggregates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREY_DATA_DIR", str(tmp_path))
    example = load("windowed_clicks")
    Click = example.Click
    async with example.aggregate.test_context() as t:
        for at, latency in [(0.0, 10.0), (30.0, 20.0)]:
            await t.put(Click(user_id="u1", event_type="click", amount=0.0, latency=latency, timestamp=at), key="u1")
        await t.put(Click(user_id="u1", event_type="buy", amount=9.5, latency=5.0, timestamp=20.0), key="u1")
        # stream time 400 >= 60 + 300: the first minute closes
        await t.put(Click(user_id="u1", event_type="click", amount=0.0, latency=1.0, timestamp=400.0), key="u1")
        for _ in range(200):
            if len(t.sent("click-window-totals")) == 2:
                break
            await asyncio.sleep(0.01)
        sent = sorted(t.sent("click-window-totals"), key=lambda r: r["key"])
    assert sent == [
        {"key": ["u1", "buy"], "start": 0.0, "end": 60.0, "count": 1, "amount": 9.5, "latency": 5.0},
        {"key": ["u1", "click"], "start": 0.0, "end": 60.0, "count": 2, "amount": 0.0, "latency": 15.0},
    ]

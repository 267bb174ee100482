"""Polling helpers shared by the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, f"condition not reached within {seconds}s"
        await asyncio.sleep(0.005)

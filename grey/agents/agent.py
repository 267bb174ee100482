"""Agents: async functions over a stream, declared with ``@app.agent(topic)``."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from grey.agents.spec import AgentFun, AgentSpec
from grey.agents.testing import TestContext
from grey.runtime.runtime import AppModel
from grey.topics import HeadersIn, Topic
from grey.transport.base import RecordMetadata


class Agent(AgentSpec):
    """An agent as the app declared it: send to it, or run it alone in a test."""

    def __init__(
        self,
        app: AppModel,
        fun: AgentFun,
        topic: Topic,
        *,
        name: str | None = None,
        concurrency: int = 1,
        sink: list[Any] | None = None,
    ) -> None:
        super().__init__(fun, topic, name=name, concurrency=concurrency, sink=sink)
        self.app = app

    async def send(
        self, value: Any = None, *, key: Any = None, headers: HeadersIn = None
    ) -> Awaitable[RecordMetadata]:
        """Send a value to this agent (through its topic)."""
        return await self.topic.send(value, key=key, headers=headers)

    def test_context(self, *, timeout: float = 5.0) -> TestContext:
        """Run this agent alone on a private memory broker: ``async with agent.test_context() as t``."""
        return TestContext(self.app, self, timeout=timeout)

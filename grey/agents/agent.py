"""Agents: async functions over a stream, declared with ``@app.agent(topic)``."""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from grey.agents.stream import ChunkQueue, Stream
from grey.sinks import Sink, as_sink
from grey.topics import HeadersIn, Topic
from grey.transport.base import RecordMetadata

if TYPE_CHECKING:  # annotation only: the harness imports the runtime, which imports agents
    from grey.agents.testing import TestContext

log = logging.getLogger(__name__)

AgentFun = Callable[[Stream], AsyncIterator[Any] | Coroutine[Any, Any, None]]


class AgentStopped(Exception):
    """Raised inside the runtime when an agent function returns before its stream ended."""


class Agent:
    """A declared agent: the function, its source topic, its concurrency and its sinks."""

    def __init__(
        self,
        fun: AgentFun,
        topic: Topic,
        *,
        name: str | None = None,
        concurrency: int = 1,
        sink: list[Any] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"agent {fun.__name__}: concurrency must be >= 1, got {concurrency}")
        if not (inspect.iscoroutinefunction(fun) or inspect.isasyncgenfunction(fun)):
            raise TypeError(
                f"agent {getattr(fun, '__qualname__', fun)!r} must be an 'async def' function taking a stream"
            )
        self.fun = fun
        self.topic = topic
        self.name = name or f"{fun.__module__}.{fun.__qualname__}"
        self.concurrency = concurrency
        self.sinks: list[Sink] = [as_sink(s) for s in (sink or [])]
        self.__doc__ = fun.__doc__
        self.__wrapped__ = fun

    def __repr__(self) -> str:
        return f"<Agent {self.name} topic={self.topic.name} concurrency={self.concurrency}>"

    def __call__(self, stream: Stream) -> AsyncIterator[Any] | Coroutine[Any, Any, None]:
        return self.fun(stream)

    async def send(
        self, value: Any = None, *, key: Any = None, headers: HeadersIn = None
    ) -> Awaitable[RecordMetadata]:
        """Send a value to this agent (through its topic)."""
        return await self.topic.send(value, key=key, headers=headers)

    async def forward(self, result: Any, key: Any) -> None:
        for sink in self.sinks:
            await sink.send(result, key=key)

    def test_context(self, **options: Any) -> TestContext:
        """Run this agent alone on a private memory broker: ``async with agent.test_context() as t``."""
        from grey.agents.testing import TestContext

        return TestContext(self, **options)


ErrorHandler = Callable[[Agent, Stream, BaseException], Awaitable[bool]]


class Actor:
    """One running instance of an agent: its queue, its stream, and restarts after errors."""

    def __init__(self, agent: Agent, index: int, queue: ChunkQueue, on_error: ErrorHandler) -> None:
        self.agent = agent
        self.index = index
        self.queue = queue
        self._on_error = on_error

    async def run(self) -> None:
        agent = self.agent
        while True:
            stream = Stream(self.queue, name=f"{agent.name}#{self.index}")
            try:
                output = agent(stream)
                if inspect.isasyncgen(output):
                    async for result in output:
                        if agent.sinks:
                            event = stream.current_event if stream.current_batch is None else None
                            await agent.forward(result, None if event is None else event.key)
                elif inspect.iscoroutine(output):
                    await output
                if not self.queue.stopped:
                    raise AgentStopped(
                        f"agent {agent.name} returned while its stream was still running; "
                        "an agent must iterate its stream until the worker stops"
                    )
                return
            except Exception as exc:  # the policy decides: restart on the next partition's events, or crash
                if not await self._on_error(agent, stream, exc):
                    return

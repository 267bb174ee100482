"""What an agent is before it runs: its function, source topic, concurrency and sinks.

The runtime runs these; :class:`grey.Agent` adds the user-facing ``send`` and
``test_context`` on top.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from grey.agents.stream import Stream
from grey.sinks import Sink, as_sink
from grey.topics import Topic

AgentFun = Callable[[Stream], AsyncIterator[Any] | Coroutine[Any, Any, None]]


class AgentSpec:
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

    async def forward(self, result: Any, key: Any) -> None:
        """Send one yielded result to every sink."""
        for sink in self.sinks:
            await sink.send(result, key=key)

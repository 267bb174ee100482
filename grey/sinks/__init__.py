"""Sinks: where an agent's yielded results go.

``@app.agent(topic, sink=[other_topic, other_agent, callback])`` forwards every
value the agent yields to each sink, in order, before the event that produced
it counts as processed. Staged sinks (``grey.sinks.staged``; Redis in
``grey.sinks.redis``) keep what they are given until the checkpoint, and write
it there with a marker so that a replay cannot apply it twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

from grey.sinks.staged import SinkMarker, StagedSink


class Sink(Protocol):
    """Receives one result at a time; ``key`` is the key of the event that produced it."""

    async def send(self, value: Any, key: Any = None) -> None: ...


class _Sendable(Protocol):
    async def send(self, value: Any = None, *, key: Any = None) -> Any: ...


class ChannelSink:
    """Forwards to a Topic or an Agent (through the agent's topic)."""

    def __init__(self, target: _Sendable) -> None:
        self.target = target

    async def send(self, value: Any, key: Any = None) -> None:
        await self.target.send(value, key=key)

    def __repr__(self) -> str:
        return f"<ChannelSink {self.target!r}>"


class CallbackSink:
    """Calls a function (plain or async) with each result."""

    def __init__(self, fun: Callable[[Any], Any]) -> None:
        self.fun = fun
        self._is_async = inspect.iscoroutinefunction(fun)

    async def send(self, value: Any, key: Any = None) -> None:
        result = self.fun(value)
        if self._is_async or inspect.isawaitable(result):
            await result

    def __repr__(self) -> str:
        return f"<CallbackSink {getattr(self.fun, '__qualname__', self.fun)!r}>"


def as_sink(target: Any) -> Sink:
    """A Sink for a Topic, an Agent, a Sink or a callable."""
    if hasattr(target, "send") and callable(target.send):
        if isinstance(target, ChannelSink | CallbackSink | StagedSink):
            return target
        return ChannelSink(target)
    if callable(target):
        return CallbackSink(target)
    raise TypeError(f"sink {target!r} is not a Topic, Agent, Sink or callable")


__all__ = ["CallbackSink", "ChannelSink", "Sink", "SinkMarker", "StagedSink", "as_sink"]


"""One running instance of an agent: its queue, its stream, and restarts after errors."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from grey.agents.spec import AgentSpec
from grey.agents.stream import ChunkQueue, Stream, current_stream


class AgentStopped(Exception):
    """An agent function returned before its stream ended."""


ErrorHandler = Callable[[AgentSpec, Stream, BaseException], Awaitable[bool]]


class Actor:
    """Runs an agent function over its queue; the error handler decides whether to restart it."""

    def __init__(self, agent: AgentSpec, index: int, queue: ChunkQueue, on_error: ErrorHandler) -> None:
        self.agent = agent
        self.index = index
        self.queue = queue
        self._on_error = on_error

    async def run(self) -> None:
        agent = self.agent
        while True:
            stream = Stream(self.queue, name=f"{agent.name}#{self.index}")
            current_stream.set(stream)  # task-local: tables find the partition in hand through it
            try:
                output = agent(stream)
                if inspect.isasyncgen(output):
                    async for result in output:
                        if agent.sinks:  # keyed like the event in hand; no key in batch mode
                            await agent.forward(result, stream.current_key)
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
                    self.queue.stop()  # for good: nothing waits on this instance any more
                    return

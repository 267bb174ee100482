"""Unit-test an agent with no broker: ``async with agent.test_context() as t: await t.put(v)``.

The agent runs in the real runtime on a private ``memory://`` broker, so
decoding, ordering, sinks and commits behave as they do in a worker.
"""

from __future__ import annotations

import asyncio
import itertools
from types import TracebackType
from typing import Any

from grey.agents.event import Event
from grey.agents.spec import AgentSpec
from grey.runtime.runtime import AppModel, Runtime
from grey.sinks import CallbackSink
from grey.topics import HeadersIn
from grey.transport import TP
from grey.transport.memory import MemoryBroker

_ids = itertools.count(1)


class TestContext:
    """A running agent on its own memory broker; see :meth:`put`, :attr:`results`, :meth:`sent`."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: AppModel, agent: AgentSpec, *, timeout: float = 5.0) -> None:
        self.app = app
        self.agent = agent
        self.timeout = timeout
        self.broker_name = f"test-{app.conf.id}-{next(_ids)}"
        self.results: list[Any] = []
        self._runtime: Runtime | None = None
        self._recorder = CallbackSink(self.results.append)

    async def __aenter__(self) -> TestContext:
        app = self.app
        if app.runtime is not None:
            raise RuntimeError(f"app {app.conf.id!r} is already running; a test context needs it stopped")
        self.agent.sinks.append(self._recorder)
        runtime = Runtime(app, broker=f"memory://{self.broker_name}", agents=[self.agent], run_timers=False)
        app.runtime = self._runtime = runtime
        await runtime.start()
        await self._wait(lambda: bool(runtime.partitions), "the agent's partitions to be assigned")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        runtime = self._runtime
        try:
            if runtime is not None:
                await runtime.stop()
        finally:
            self.agent.sinks.remove(self._recorder)
            self.app.runtime = None
            MemoryBroker.forget(self.broker_name)
        crash = runtime.crash_reason() if runtime is not None else None
        if crash is not None and exc is None:
            raise RuntimeError(f"agent {self.agent.name} crashed the test runtime: {crash!r}") from crash

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("use the test context inside `async with`")
        return self._runtime

    async def put(
        self, value: Any = None, *, key: Any = None, headers: HeadersIn = None, partition: int | None = None
    ) -> Event:
        """Send one event to the agent's topic and wait until the agent has processed it.

        Raises the agent's exception if the agent failed on this event.
        """
        runtime = self.runtime
        metadata = await self.agent.topic.send_and_wait(value, key=key, headers=headers, partition=partition)
        tp = TP(metadata.topic, metadata.partition)
        failures_before = len(runtime.failures)

        def done() -> bool:
            if len(runtime.failures) > failures_before:
                return True
            state = runtime.partitions.get(tp)
            offset = state.committable() if state is not None else None
            return offset is not None and offset > metadata.offset

        await self._wait(done, f"the agent to process offset {metadata.offset} of {tp.topic}[{tp.partition}]")
        for failure in runtime.failures[failures_before:]:
            raise failure.error
        broker = MemoryBroker.named(self.broker_name)
        record = broker.log(tp.topic, tp.partition).records[metadata.offset]
        return Event(record, key, self.agent.topic.value_codec.loads(record.value) if record.value else None)

    def sent(self, topic: str) -> list[Any]:
        """Values the agent (or its sinks) sent to ``topic``, decoded with that topic's codec."""
        declared = self.app.topics.get(topic)
        broker = MemoryBroker.named(self.broker_name)
        if topic not in broker.topics:
            return []
        out: list[Any] = []
        for log in broker.topics[topic]:
            for record in log.records:
                if record.control or record.value is None:
                    continue
                out.append(declared.value_codec.loads(record.value) if declared else record.value)
        return out

    async def _wait(self, condition: Any, what: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while not condition():
            crashed = self.runtime.crashed
            if crashed is not None and crashed.done():
                crashed.result()
            if loop.time() > deadline:
                raise TimeoutError(f"waited {self.timeout}s for {what}")
            await asyncio.sleep(0.001)

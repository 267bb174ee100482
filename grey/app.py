"""The App: the root of what a service declares (topics, agents, timers, tasks) and its settings."""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from grey.agents.agent import Agent
from grey.agents.spec import AgentFun
from grey.codecs import Codec
from grey.config import Settings, build_settings, read_connector_file
from grey.runtime.runtime import Runtime, TaskFun
from grey.sinks.staged import StagedSink
from grey.tables.table import Table
from grey.topics import Topic
from grey.transport import Producer

F = TypeVar("F", bound=TaskFun)
S = TypeVar("S", bound=StagedSink)


class App:
    """A grey application: ``app = grey.App("clicks", broker="kafka://127.0.0.1:9092")``."""

    def __init__(
        self,
        id: str,  # noqa: A002 - the app id, as in Faust
        *,
        broker: str | None = None,
        processing_guarantee: str | None = None,
        **options: Any,
    ) -> None:
        if broker is not None:
            options["broker"] = broker
        if processing_guarantee is not None:
            options["processing_guarantee"] = processing_guarantee
        self.conf: Settings = build_settings(id, options)
        self.topics: dict[str, Topic] = {}
        self.agents: list[Agent] = []
        self.timers: list[tuple[float, TaskFun]] = []
        self.tasks: list[TaskFun] = []
        self.tables: list[Table] = []
        self.sinks: list[StagedSink] = []
        self.runtime: Runtime | None = None

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], id: str | None = None, **overrides: Any) -> App:  # noqa: A002
        """An App from the connector YAML file (see docs/configuration.md)."""
        file_id, options = read_connector_file(path)
        options.update(overrides)
        return cls(id or file_id, **options)

    def __repr__(self) -> str:
        return f"<grey.App {self.conf.id} broker={self.conf.broker}>"

    @property
    def id(self) -> str:
        return self.conf.id

    # -- declarations --------------------------------------------------

    def topic(
        self,
        name: str,
        *,
        key_type: Any = None,
        value_type: Any = None,
        partitions: int | None = None,
        replicas: int | None = None,
        retention: float | str | None = None,
        compacted: bool = False,
        key_serializer: str | Codec | None = None,
        value_serializer: str | Codec | None = None,
        config: dict[str, str] | None = None,
    ) -> Topic:
        """Declare a topic; it is created on start when missing. Declaring a name twice returns the first."""
        existing = self.topics.get(name)
        if existing is not None:
            return existing
        topic = Topic(
            self, name, key_type=key_type, value_type=value_type, partitions=partitions,
            replicas=replicas, retention=retention, compacted=compacted,
            key_serializer=key_serializer, value_serializer=value_serializer, config=config,
        )
        self.topics[name] = topic
        return topic

    def Table(
        self,
        name: str,
        *,
        default: Callable[[], Any] | None = None,
        key_type: Any = None,
        value_type: Any = None,
        partitions: int | None = None,
        store: str = "rocksdb://",
    ) -> Table:
        """Declare a table: partitioned like the agents' topics, changelogged to ``{id}-{name}-changelog``."""
        if any(t.name == name for t in self.tables):
            raise ValueError(f"a table named {name!r} is already declared")
        table = Table(self, name, default=default, key_type=key_type, value_type=value_type,
                      partitions=partitions, store=store)
        self.tables.append(table)
        return table

    def agent(
        self,
        topic: Topic | str,
        *,
        name: str | None = None,
        concurrency: int = 1,
        sink: list[Any] | None = None,
    ) -> Callable[[AgentFun], Agent]:
        """Declare an agent over a topic: ``@app.agent(clicks)`` above ``async def f(stream)``."""
        source = self.topic(topic) if isinstance(topic, str) else topic

        def decorate(fun: AgentFun) -> Agent:
            agent = Agent(self, fun, source, name=name, concurrency=concurrency, sink=sink)
            if any(a.name == agent.name for a in self.agents):
                raise ValueError(f"an agent named {agent.name!r} is already declared; pass name=...")
            self.agents.append(agent)
            return agent

        return decorate

    def add_sink(self, sink: S) -> S:
        """Register a staged sink that agents write with ``sink.add(value)`` (one listed in an agent's
        ``sink=[...]`` is registered already); the worker starts it and flushes it at checkpoints."""
        if not isinstance(sink, StagedSink):
            raise TypeError(f"{sink!r} is not a staged sink (grey.sinks.StagedSink, e.g. RedisSink)")
        if sink not in self.sinks:
            self.sinks.append(sink)
        return sink

    def timer(self, seconds: float) -> Callable[[F], F]:
        """Run an ``async def`` every ``seconds`` while the worker runs."""
        if seconds <= 0:
            raise ValueError(f"timer interval must be > 0 seconds, got {seconds}")

        def decorate(fun: F) -> F:
            _require_async(fun, "timer")
            self.timers.append((float(seconds), fun))
            return fun

        return decorate

    def task(self, fun: F) -> F:
        """Run an ``async def`` once when the worker starts."""
        _require_async(fun, "task")
        self.tasks.append(fun)
        return fun

    # -- running -------------------------------------------------------

    @property
    def producer(self) -> Producer:
        if self.runtime is None:
            raise RuntimeError(
                f"app {self.id!r} is not running: start it with `grey worker -A module`, or use "
                "`async with app.running():` to send from a script"
            )
        return self.runtime.producer

    @contextlib.asynccontextmanager
    async def running(
        self, *, consume: bool = True, broker: str | None = None, run_timers: bool = True
    ) -> AsyncIterator[Runtime]:
        """Run the app inside ``async with``; ``consume=False`` only creates topics and a producer."""
        if self.runtime is not None:
            raise RuntimeError(f"app {self.id!r} is already running")
        runtime = Runtime(self, broker=broker, consume=consume, run_timers=run_timers)
        self.runtime = runtime
        body_failed = False
        try:
            await runtime.start()
            yield runtime
        except BaseException:
            body_failed = True
            raise
        finally:
            try:
                await runtime.stop()
            finally:
                self.runtime = None
            crash = runtime.crash_reason()
            if crash is not None and not body_failed:
                raise RuntimeError(f"app {self.id!r} crashed while running: {crash!r}") from crash


def _require_async(fun: Callable[..., Any], what: str) -> None:
    if not inspect.iscoroutinefunction(fun):
        raise TypeError(f"@app.{what} needs an 'async def' function; {fun.__qualname__} is not")

"""The running app: fetch, decode, hand chunks to agents, commit what they finished.

One fetch loop per worker pulls batches with ``getmany``, decodes each
partition's values once, and puts a chunk on the queue of each agent
instance that reads the topic (split by key hash when ``concurrency > 1``, so a
key always goes to the same instance and stays in order). Bounded queues are
the backpressure. A committer commits the done prefix of every partition every
``checkpoint_interval`` events or ``commit_interval`` seconds, after flushing
the producer, so what an event sent is on the broker before its offset is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from grey.agents.spec import AgentSpec
from grey.agents.stream import Chunk, ChunkQueue, Stream
from grey.codecs import CodecError
from grey.config import ConfigError, Settings
from grey.observability.metrics import DECODE_ERRORS, EVENTS_PROCESSED
from grey.runtime.actor import Actor, AgentStopped
from grey.runtime.checkpoint import Checkpoint
from grey.runtime.partitions import PartitionState
from grey.tables.errors import TableError
from grey.tables.recovery import Recovered, recover_partition
from grey.tables.table import Table
from grey.topics import Topic
from grey.transport import TP, Consumer, Message, Producer, Transport, open_transport

TaskFun = Callable[[], Awaitable[None]]

log = logging.getLogger(__name__)


class AppModel(Protocol):
    """What a Runtime needs of an App: its settings and declarations, and where to register itself."""

    conf: Settings
    topics: dict[str, Topic]
    agents: list[Any]  # AgentSpec objects (grey.Agent in an App)
    timers: list[tuple[float, TaskFun]]
    tasks: list[TaskFun]
    tables: list[Table]
    runtime: Runtime | None


@dataclass(slots=True)
class _Route:
    topic: Topic
    instances: list[list[Actor]]  # per agent reading the topic: its actors


@dataclass(slots=True)
class AgentFailure:
    """An agent raised on an event; recorded for the harness and for health checks."""

    agent: str
    topic: str | None
    partition: int | None
    offset: int | None
    error: BaseException


class Runtime:
    """Runs an App's agents, timers and tasks against one broker."""

    def __init__(
        self,
        app: AppModel,
        *,
        broker: str | None = None,
        agents: Sequence[AgentSpec] | None = None,
        consume: bool = True,
        run_timers: bool = True,
    ) -> None:
        self.app = app
        self.conf = app.conf
        self.broker_url = broker or app.conf.broker
        self.agents: list[AgentSpec] = list(app.agents if agents is None else agents)
        self.consume = consume and bool(self.agents)
        self.run_timers = run_timers
        self.transport: Transport | None = None
        self.consumer: Consumer | None = None
        self._producer: Producer | None = None
        self.partitions: dict[TP, PartitionState] = {}
        self.failures: list[AgentFailure] = []
        self.crashed: asyncio.Future[None] | None = None
        self.decode_errors = 0
        self._routes: dict[str, _Route] = {}
        self._actors: list[Actor] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._actor_tasks: list[asyncio.Task[None]] = []
        self._checkpoint: Checkpoint | None = None
        self._recoveries: set[asyncio.Task[None]] = set()
        self.recovering: set[int] = set()  # partition numbers whose tables are being rebuilt
        self.recovered: list[Recovered] = []
        self._commit_lock = asyncio.Lock()
        self._commit_wanted = asyncio.Event()
        self._since_commit = 0
        self._stopping = False
        self.processed = 0
        self._events_metric = EVENTS_PROCESSED.labels(app.conf.id)

    # -- lifecycle ------------------------------------------------------

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError(f"app {self.conf.id!r} is not running")
        return self._producer

    async def start(self) -> None:
        if self.conf.processing_guarantee == "exactly_once":
            raise ConfigError(
                "processing_guarantee='exactly_once' is accepted in configuration, but the transaction "
                "manager is not built yet; run with at_least_once until it lands"
            )
        loop = asyncio.get_running_loop()
        self.crashed = loop.create_future()
        self.transport = open_transport(self.broker_url)
        await self._create_topics()
        self._producer = self.transport.producer(self.conf.client)
        await self._producer.start()
        if self.consume:
            self._build_actors()
            self.consumer = self.transport.consumer(self.conf.client)
            self.consumer.subscribe(self._routes, self._on_revoked, self._on_assigned)
            self._checkpoint = Checkpoint(self.consumer, self._producer, self.app.tables,
                                          commit_offsets=self.conf.processing_guarantee != "at_most_once")
            await self.consumer.start()
            self._actor_tasks = [loop.create_task(a.run(), name=f"grey-agent:{a.agent.name}#{a.index}")
                                 for a in self._actors]
            self._tasks.append(loop.create_task(self._fetch_loop(), name="grey-fetch"))
            self._tasks.append(loop.create_task(self._commit_loop(), name="grey-commit"))
            for table in self.app.tables:
                if table.listener is not None:  # windows close on a clock as well as on events
                    self._tasks.append(loop.create_task(self._tick(table), name=f"grey-windows:{table.name}"))
        if self.run_timers:
            for seconds, fun in self.app.timers:
                self._tasks.append(loop.create_task(self._timer(seconds, fun), name=f"grey-timer:{fun.__name__}"))
            for fun in self.app.tasks:
                self._tasks.append(loop.create_task(self._guard(fun(), fun.__name__), name=f"grey-task:{fun.__name__}"))
        log.info("grey app %s started on %s (%s, %d agent(s))", self.conf.id, self.broker_url,
                 self.conf.processing_guarantee, len(self.agents) if self.consume else 0)

    async def stop(self) -> None:
        """Finish the event (or batch) in hand, commit, leave the group, close clients."""
        if self._stopping:
            return
        self._stopping = True
        fetch_and_timers = list(self._tasks)
        async with self._commit_lock:  # never cancel the committer half-way through a checkpoint
            for task in fetch_and_timers:
                task.cancel()
        await asyncio.gather(*fetch_and_timers, return_exceptions=True)
        for actor in self._actors:
            actor.queue.stop()
        if self._actor_tasks:
            _, pending = await asyncio.wait(self._actor_tasks, timeout=self.conf.shutdown_timeout)
            for task in pending:
                log.warning("agent task %s did not finish within %.0fs; cancelling", task.get_name(),
                            self.conf.shutdown_timeout)
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for task in list(self._recoveries):
            task.cancel()
        await asyncio.gather(*self._recoveries, return_exceptions=True)
        if self.consumer is not None:
            await self.commit()
            await self.consumer.stop()
        for table in self.app.tables:
            table.close()
        if self._producer is not None:
            await self._producer.stop()
        log.info("grey app %s stopped after %d events", self.conf.id, self.processed)

    def crash_reason(self) -> BaseException | None:
        """Why the runtime crashed, or None."""
        crashed = self.crashed
        if crashed is None or not crashed.done() or crashed.cancelled():
            return None
        return crashed.exception()

    def crash(self, exc: BaseException) -> None:
        """Ask the worker to stop with a failure exit code."""
        log.critical("grey app %s crashed: %r", self.conf.id, exc)
        if self.crashed is not None and not self.crashed.done():
            self.crashed.set_exception(exc)

    async def _create_topics(self) -> None:
        assert self.transport is not None
        admin = self.transport.admin(self.conf.client)
        await admin.start()
        try:
            self._size_tables(await admin.list_topics())
            specs = [t.spec() for t in self.app.topics.values()]
            created = await admin.create_topics(specs)
            if created:
                log.info("created topics: %s", ", ".join(created))
            existing = await admin.list_topics()
            self._check_copartitioned(existing)
            for topic in self.app.topics.values():
                have = existing.get(topic.name)
                if topic.partitions and have is not None and have != topic.partitions:
                    log.warning(
                        "topic %s exists with %d partitions but is declared with %d; the broker's %d are used "
                        "(declare partitions=%d, or add partitions with the Kafka tools)",
                        topic.name, have, topic.partitions, have, have,
                    )
        finally:
            await admin.stop()

    def _size_tables(self, existing: dict[str, int]) -> None:
        """Tables declared without ``partitions`` take the partition count of the agents' topics."""
        counts = {existing.get(a.topic.name, a.topic.spec().partitions) for a in self.agents}
        count = counts.pop() if len(counts) == 1 else self.conf.topic_partitions
        for table in self.app.tables:
            if table.partitions is None:
                table.use_partitions(count)

    def _check_copartitioned(self, existing: dict[str, int]) -> None:
        """A table's partition p holds the state of partition p of every source topic: counts must match."""
        if not self.app.tables or not self.consume:
            return
        for agent in self.agents:
            have = existing.get(agent.topic.name, agent.topic.spec().partitions)
            for table in self.app.tables:
                if have != table.partitions:
                    raise ConfigError(
                        f"table {table.name!r} has {table.partitions} partitions but agent {agent.name}'s topic "
                        f"{agent.topic.name!r} has {have}: tables must be co-partitioned with the topics of "
                        f"the agents that use them (declare app.Table(..., partitions={have}))"
                    )

    def _build_actors(self) -> None:
        for agent in self.agents:
            route = self._routes.setdefault(agent.topic.name, _Route(agent.topic, []))
            every = min(self.conf.checkpoint_interval, 100)
            actors = [Actor(agent, i, ChunkQueue(self.conf.max_inflight_batches, self._on_processed, every),
                            self._on_agent_error) for i in range(agent.concurrency)]
            route.instances.append(actors)
            self._actors.extend(actors)

    # -- rebalancing ---------------------------------------------------

    async def _on_assigned(self, tps: set[TP]) -> None:
        for tp in tps:
            self.partitions[tp] = PartitionState(tp)
        log.info("assigned %d partition(s): %s", len(tps), _fmt(tps))
        if self.app.tables and tps and self.consumer is not None:
            numbers = {tp.partition for tp in tps} - self.recovering
            self.consumer.pause(*tps)  # no event before its table partitions are rebuilt
            self.recovering |= numbers
            task = asyncio.get_running_loop().create_task(self._recover(numbers, tps), name="grey-recovery")
            self._recoveries.add(task)
            task.add_done_callback(self._recoveries.discard)

    async def _recover(self, numbers: set[int], tps: set[TP]) -> None:
        assert self.transport is not None and self.consumer is not None
        try:
            for number in sorted(numbers):
                for table in self.app.tables:
                    self.recovered.append(await recover_partition(table, number, self.transport, self.conf.client))
                    table.partition_ready(number)
                self.recovering.discard(number)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("recovery of table partitions %s failed", sorted(numbers))
            self.crash(exc)
            return
        live = [tp for tp in tps if tp in self.partitions]
        if live:
            self.consumer.resume(*live)

    async def _on_revoked(self, tps: set[TP]) -> None:
        for task in list(self._recoveries):
            task.cancel()
        await asyncio.gather(*self._recoveries, return_exceptions=True)
        if not self._stopping:
            await self.commit(tps)
        for tp in tps:
            state = self.partitions.pop(tp, None)
            if state is not None:
                state.active = False  # queued chunks of it are skipped; the new owner redoes them
        still_owned = {tp.partition for tp in self.partitions}
        for table in self.app.tables:
            for number in table.owned:
                if number not in still_owned:
                    table.close_partition(number)
        self.recovering &= still_owned
        log.info("revoked %d partition(s): %s", len(tps), _fmt(tps))

    # -- the hot path --------------------------------------------------

    async def _fetch_loop(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        at_most_once = self.conf.processing_guarantee == "at_most_once"
        max_records = self.conf.client.max_poll_records
        try:
            while True:
                found = await consumer.getmany(timeout_ms=500, max_records=max_records)
                if not found:
                    continue
                if at_most_once:  # commit before processing: a crash loses, never repeats
                    await self._commit_fetched(found)
                for tp, messages in found.items():
                    await self._dispatch(tp, messages)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.crash(exc)

    async def _dispatch(self, tp: TP, messages: list[Message]) -> None:
        state = self.partitions.get(tp)
        if state is None or not state.active or state.stopped:
            return
        route = self._routes[tp.topic]
        good, values = await self._decode(route.topic, messages)
        part = state.track(messages[-1].offset)
        if not good:
            return
        decode_key = route.topic.decode_key
        count = len(good)
        solo = len(route.instances) == 1
        for actors in route.instances:
            part.remaining += count
            if len(actors) == 1:
                chunk = Chunk(state, part, good, values, decode_key)
                if solo:
                    part.solo = chunk
                await actors[0].queue.put(chunk)
                continue
            n = len(actors)
            split_msgs: list[list[Message]] = [[] for _ in range(n)]
            split_vals: list[list[Any]] = [[] for _ in range(n)]
            for message, value in zip(good, values, strict=True):
                i = hash(message.key) % n
                split_msgs[i].append(message)
                split_vals[i].append(value)
            for i, actor in enumerate(actors):
                if split_msgs[i]:
                    await actor.queue.put(Chunk(state, part, split_msgs[i], split_vals[i], decode_key))

    async def _decode(self, topic: Topic, messages: list[Message]) -> tuple[list[Message], list[Any]]:
        try:  # the fast path: one call for the whole batch
            return messages, topic.value_codec.loads_many([m.value for m in messages])
        except CodecError:
            pass
        loads = topic.value_codec.loads  # some record is bad: find it, keep the rest
        good: list[Message] = []
        values: list[Any] = []
        for message in messages:
            try:
                values.append(None if message.value is None else loads(message.value))
                good.append(message)
            except CodecError as exc:
                await self._reject(message, exc, stage="decode")
        return good, values

    async def _reject(self, message: Message, exc: Exception, stage: str) -> None:
        """Report a record that cannot be processed; send it to the dead-letter topic if one is set."""
        self.decode_errors += 1
        DECODE_ERRORS.labels(message.topic).inc()
        dlq = self.conf.dead_letter_topic
        log.error(
            "bad record at topic=%s partition=%d offset=%d (%s): %s%s",
            message.topic, message.partition, message.offset, stage, exc,
            f"; sent to dead-letter topic {dlq}" if dlq else "; skipped (set dead_letter_topic to keep it)",
        )
        if dlq:
            headers = [
                *(message.headers or ()),
                ("grey.error", str(exc).encode()),
                ("grey.stage", stage.encode()),
                ("grey.topic", message.topic.encode()),
                ("grey.partition", str(message.partition).encode()),
                ("grey.offset", str(message.offset).encode()),
            ]
            await self.producer.send(dlq, message.value, key=message.key, headers=headers)

    def _on_processed(self, count: int) -> None:
        self.processed += count
        self._events_metric.inc(count)
        self._since_commit += count
        if self._since_commit >= self.conf.checkpoint_interval:
            self._commit_wanted.set()

    # -- commits -------------------------------------------------------

    async def _commit_loop(self) -> None:
        while not self._stopping:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel from stop()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.conf.commit_interval):
                    await self._commit_wanted.wait()
            self._commit_wanted.clear()
            await self.commit()

    async def commit(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        """Commit the done prefix of each owned partition (or of ``tps``); returns what was committed."""
        if self.consumer is None:
            return {}
        async with self._commit_lock:
            self._since_commit = 0
            states = list(self.partitions.values()) if tps is None else [
                s for tp in tps if (s := self.partitions.get(tp)) is not None]
            assert self._checkpoint is not None
            return await self._checkpoint.run(states)

    async def _commit_fetched(self, found: dict[TP, list[Message]]) -> None:
        assert self.consumer is not None
        offsets = {tp: msgs[-1].offset + 1 for tp, msgs in found.items()}
        await self.consumer.commit(offsets)
        for tp, offset in offsets.items():
            state = self.partitions.get(tp)
            if state is not None:
                state.committed = offset

    # -- errors, timers, tasks ----------------------------------------

    async def _on_agent_error(self, agent: AgentSpec, stream: Stream, exc: BaseException) -> bool:
        """The error policy. True: restart the agent instance; False: it stays down (worker crashes)."""
        if isinstance(exc, AgentStopped) or self._stopping:
            if not self._stopping:
                self.crash(exc)
            return False
        batch = stream.current_batch
        event = stream.current_event if batch is None else None
        if batch is not None:
            tp, where = TP(batch.topic, batch.partition), f"offsets {batch.first_offset}..{batch.last_offset}"
        elif event is not None:
            tp, where = TP(event.topic, event.partition), f"offset {event.offset}"
        else:
            tp, where = None, "no event"
        if isinstance(exc, TableError) and tp is not None and tp not in self.partitions:
            # A rebalance took the partition (and its table partition) while the agent held its events:
            # not a failure; the new owner processes them again from the committed offset.
            log.info("agent %s: %s[%d] was revoked while processing %s; the new owner redoes it",
                     agent.name, tp.topic, tp.partition, where)
            return True
        self.failures.append(AgentFailure(agent.name, tp.topic if tp else None, tp.partition if tp else None,
                                          (batch.first_offset if batch else event.offset if event else None), exc))
        log.error("agent %s failed at topic=%s partition=%s %s: %r", agent.name,
                  tp.topic if tp else "-", tp.partition if tp else "-", where, exc, exc_info=exc)
        if self.conf.on_error == "crash" or tp is None:
            self.crash(exc)
            return False
        stopped = self.partitions.get(tp)
        if stopped is not None:
            stopped.stopped = True
            if self.consumer is not None:
                self.consumer.pause(tp)
            log.error("partition %s[%d] is stopped: nothing after %s is processed or committed until the "
                      "worker restarts (on_error='stop_partition')", tp.topic, tp.partition, where)
        return True

    async def _tick(self, table: Table, seconds: float = 0.25) -> None:
        listener = table.listener
        assert listener is not None
        while True:
            await asyncio.sleep(seconds)
            try:
                await listener.tick()
            except Exception as exc:
                log.exception("closing windows of table %s failed", table.name)
                self.crash(exc)
                return

    async def _timer(self, seconds: float, fun: TaskFun) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self._guard(fun(), fun.__name__)

    async def _guard(self, work: Awaitable[None], name: str) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("timer/task %s failed: %r", name, exc)


def _fmt(tps: Iterable[TP]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "-"

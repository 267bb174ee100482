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
from grey.agents.stream import Chunk, ChunkQueue, Stream, current_partition, current_stream
from grey.codecs import Codec, CodecError
from grey.config import Settings
from grey.observability.metrics import DECODE_ERRORS, EVENTS_PROCESSED
from grey.runtime.actor import Actor, AgentStopped
from grey.runtime.checkpoint import Checkpoint
from grey.runtime.partitions import PartitionLost, PartitionState
from grey.runtime.topology import prepare_topics
from grey.runtime.transactions import Transactions
from grey.sinks.staged import StagedSink
from grey.tables.errors import TableError
from grey.tables.recovery import Recovered, recover_partition
from grey.tables.table import Table
from grey.topics import Topic
from grey.transport import TP, Consumer, Message, Producer, ProducerFencedError, Transport, open_transport

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
    sinks: list[StagedSink]
    runtime: Runtime | None

    def topic(self, name: str, *, partitions: int | None = ..., compacted: bool = ...,
              key_serializer: str | Codec | None = ..., value_serializer: str | Codec | None = ...) -> Topic: ...


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
        self.transactions: Transactions | None = None  # exactly-once: the partition groups' transactions
        self.sinks: list[StagedSink] = _staged_sinks(app, self.agents)
        self._labels: dict[str, str] = {}  # source topic -> its topic group's name
        self._dispatch_open = asyncio.Event()  # closed while a checkpoint waits for the agents
        self._dispatch_open.set()
        self._fetch_idle = asyncio.Event()  # the fetch loop is not handing out records
        self._fetch_idle.set()
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
        """The producer for a send made now: under exactly-once, that of the event in hand's group."""
        txns = self.transactions
        if txns is not None:
            stream = current_stream.get()
            group = stream.group if stream is not None else None
            if group is None and (number := current_partition.get()) is not None:
                group = txns.group_of_partition(number)
            if group:
                return txns.producer_for(group)
        if self._producer is None:
            raise RuntimeError(f"app {self.conf.id!r} is not running")
        return self._producer

    @property
    def exactly_once(self) -> bool:
        return self.conf.processing_guarantee == "exactly_once"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.crashed = loop.create_future()
        self.transport = open_transport(self.broker_url)
        if self.conf.dead_letter_topic and self.consume:  # created with the others when missing
            self.app.topic(self.conf.dead_letter_topic, key_serializer="raw", value_serializer="raw")
        markers = None
        if self.exactly_once and self.sinks and self.consume:
            markers = self.app.topic(f"{self.conf.id}-sink-markers", partitions=1, compacted=True,
                                     key_serializer="raw", value_serializer="raw").name
        assert self.transport is not None
        self._labels = await prepare_topics(self.transport, self.conf, self.app.topics.values(), self.app.tables,
                                            self.agents, consume=self.consume)
        self._producer = self.transport.producer(self.conf.client)
        await self._producer.start()
        for sink in self.sinks:
            await sink.start(self.conf.id)
        if self.consume:
            self._build_actors()
            self.consumer = self.transport.consumer(self.conf.client)
            self.consumer.subscribe(self._routes, self._on_revoked, self._on_assigned)
            self._checkpoint = Checkpoint(self.consumer, self._producer, self.app.tables, self.sinks,
                                          commit_offsets=self.conf.processing_guarantee != "at_most_once")
            if self.exactly_once:
                self.transactions = Transactions(self.conf, self.transport, self.consumer, self.partitions,
                                                 self.app.tables, self.sinks, markers, self.crash)
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
        if self.transactions is not None and self.consumer is not None and self.crash_reason() is None:
            # Exactly-once: the last checkpoint while the agents still run, so it can wait for them to
            # finish what they hold; the fetch loop hands out nothing after it.
            await self.commit()
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
            if self.transactions is not None:
                await self.transactions.close()
            await self.consumer.stop()
        for table in self.app.tables:
            table.close()
        for sink in self.sinks:
            await sink.stop()
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

    def _build_actors(self) -> None:
        for agent in self.agents:
            route = self._routes.setdefault(agent.topic.name, _Route(agent.topic, []))
            every = min(self.conf.checkpoint_interval, 100)
            actors = [Actor(agent, i, ChunkQueue(self.conf.max_inflight_batches, self._on_processed, every),
                            self._on_agent_error) for i in range(agent.concurrency)]
            route.instances.append(actors)
            self._actors.extend(actors)

    # -- rebalancing ---------------------------------------------------

    def group_of(self, tp: TP) -> str:
        """The partition group of a source partition: ``{topic group}-{partition}``."""
        return f"{self._labels.get(tp.topic, tp.topic)}-{tp.partition}"

    async def _on_assigned(self, tps: set[TP]) -> None:
        states = []
        for tp in tps:
            states.append(state := PartitionState(tp, group=self.group_of(tp)))
            self.partitions[tp] = state
        log.info("assigned %d partition(s): %s", len(tps), _fmt(tps))
        if self._stopping:  # the worker stopped while it was joining the group: nothing is processed
            return
        if tps and self.consumer is not None and (self.app.tables or self.transactions is not None):
            numbers = {tp.partition for tp in tps} - self.recovering
            self.consumer.pause(*tps)  # no event before its producer is fenced in and its tables rebuilt
            self.recovering |= numbers
            task = asyncio.get_running_loop().create_task(self._recover(numbers, tps, states),
                                                          name="grey-recovery")
            self._recoveries.add(task)
            task.add_done_callback(self._recoveries.discard)

    async def _recover(self, numbers: set[int], tps: set[TP], states: list[PartitionState]) -> None:
        assert self.transport is not None and self.consumer is not None
        try:
            if self.transactions is not None:
                await self.transactions.assign(states)
            for number in sorted(numbers):
                for table in self.app.tables:
                    self.recovered.append(await recover_partition(table, number, self.transport, self.conf.client))
                    table.partition_ready(number)
                self.recovering.discard(number)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("preparing partitions %s (transactional producers, offsets, table recovery) failed",
                          _fmt(tps))
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
        if self.transactions is not None:
            await self.transactions.release(tps)
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
        partitions = self.partitions
        gate, idle = self._dispatch_open, self._fetch_idle
        try:
            while True:
                found = await consumer.getmany(timeout_ms=500, max_records=max_records)
                if not found:
                    continue
                owners = [(tp, messages, partitions.get(tp)) for tp, messages in found.items()]
                if not gate.is_set():  # a checkpoint is waiting for the agents to finish
                    await gate.wait()
                idle.clear()
                try:
                    if at_most_once:  # commit before processing: a crash loses, never repeats
                        await self._commit_fetched(found)
                    for tp, messages, state in owners:
                        # A state replaced since the fetch (rebalance, aborted transaction) drops the records.
                        if state is not None and state.active and not state.stopped:
                            await self._dispatch(tp, messages, state)
                finally:
                    idle.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.crash(exc)

    async def _dispatch(self, tp: TP, messages: list[Message], state: PartitionState) -> None:
        route = self._routes[tp.topic]
        good, values = await self._decode(route.topic, messages, state)
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

    async def _decode(self, topic: Topic, messages: list[Message], state: PartitionState
                      ) -> tuple[list[Message], list[Any]]:
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
                await self._reject(message, exc, stage="decode", group=state.group)
        return good, values

    async def _reject(self, message: Message, exc: Exception, stage: str, group: str) -> None:
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
            txns = self.transactions  # under exactly-once the dead letter commits with the offset it skips
            producer = txns.producer_for(group) if txns is not None else self.producer
            await producer.send(dlq, message.value, key=message.key, headers=headers)

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
            wanted = None if tps is None else set(tps)
            if self.transactions is None:
                assert self._checkpoint is not None
                return await self._checkpoint.run(self._states(wanted))
            clock = asyncio.get_running_loop().time
            began = clock()
            await self.transactions.presend()  # the bulk of the changelog, while the agents go on
            sent = clock()
            self._dispatch_open.clear()
            try:
                if not await self._quiesce():
                    return {}
                held = clock()
                done = await self.transactions.commit(self._states(wanted))
            finally:
                if not self._stopping:
                    self._dispatch_open.set()
            committed = clock()
            await done.write_stores()  # RocksDB catches up while the agents go on
            if done.offsets or done.stores:
                log.debug("checkpoint: changelog %.0f ms, waiting for the agents %.0f ms, commit %.0f ms "
                          "(agents held %.0f ms), stores %.0f ms", (sent - began) * 1e3, (held - sent) * 1e3,
                          (committed - held) * 1e3, (committed - sent) * 1e3, (clock() - committed) * 1e3)
            return done.offsets

    def _states(self, tps: set[TP] | None) -> list[PartitionState]:
        if tps is None:
            return list(self.partitions.values())
        return [s for tp in tps if (s := self.partitions.get(tp)) is not None]

    async def _quiesce(self) -> bool:
        """Wait until the fetch loop hands out nothing and every agent finished what it was handed.

        Then the open transactions hold exactly the effects of the offsets a
        checkpoint commits. False if the agents did not get there within
        ``shutdown_timeout`` (the checkpoint is skipped; a stuck agent is logged).
        """
        if not self._actor_tasks:  # stopped before the agents started: nothing was handed out
            return True
        try:
            async with asyncio.timeout(self.conf.shutdown_timeout):
                await self._fetch_idle.wait()
                for actor in self._actors:
                    await actor.queue.drained()
        except TimeoutError:
            busy = [f"{a.agent.name}#{a.index}" for a in self._actors if not a.queue.is_drained]
            log.warning("checkpoint skipped: agents %s did not finish their events within %.0fs",
                        ", ".join(busy), self.conf.shutdown_timeout)
            return False
        return True

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
        if isinstance(exc, TableError | PartitionLost) and tp is not None and tp not in self.partitions:
            # A rebalance took the partition (and its table partition) while the agent held its events:
            # not a failure; the new owner processes them again from the committed offset.
            log.info("agent %s: %s[%d] was revoked while processing %s; the new owner redoes it",
                     agent.name, tp.topic, tp.partition, where)
            return True
        state = self.partitions.get(tp) if tp is not None else None
        if isinstance(exc, ProducerFencedError) and self.transactions is not None and state is not None:
            # Another worker fenced the group's producer: the next checkpoint gives the group up.
            log.info("agent %s: the producer of partition group %s was fenced while processing %s",
                     agent.name, state.group, where)
            self.transactions.fail(state.group, exc)
            self._commit_wanted.set()
            return True
        self.failures.append(AgentFailure(agent.name, tp.topic if tp else None, tp.partition if tp else None,
                                          (batch.first_offset if batch else event.offset if event else None), exc))
        log.error("agent %s failed at topic=%s partition=%s %s: %r", agent.name,
                  tp.topic if tp else "-", tp.partition if tp else "-", where, exc, exc_info=exc)
        if self.conf.on_error == "crash" or tp is None:
            self.crash(exc)
            return False
        stopped = self.partitions.get(tp)
        if self.transactions is not None and stopped is not None:
            # The group's open transaction holds part of this event's effects: the next checkpoint aborts it.
            self.transactions.fail(stopped.group, exc)
            self._commit_wanted.set()
            return True
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
                async with self._commit_lock:  # never between a checkpoint's wait for the agents and its commit
                    await listener.tick()
            except PartitionLost as exc:  # a group given up under exactly-once: its new owner closes them
                log.info("windows of table %s: %s", table.name, exc)
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


def _staged_sinks(app: AppModel, agents: Sequence[AgentSpec]) -> list[StagedSink]:
    """The staged sinks the app registered or its agents list, each once."""
    found: list[StagedSink] = list(app.sinks)
    for agent in agents:
        for sink in agent.sinks:
            if isinstance(sink, StagedSink) and sink not in found:
                found.append(sink)
    return found


def _fmt(tps: Iterable[TP]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)) or "-"

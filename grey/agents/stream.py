"""Streams: how an agent pulls events, one at a time or in batches.

An event counts as processed (and may be committed) once the agent asks for
the next one; a batch once the agent asks for the next batch. That is what
makes at-least-once hold without the agent calling anything.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from grey.agents.event import Batch, Event
from grey.runtime.partitions import PartitionState, Slice
from grey.transport.base import Message

KeyDecoder = Callable[[bytes | None], Any]


class Chunk:
    """Consecutive events of one partition bound for one agent instance.

    ``pos`` is how many values were handed to the agent, ``done`` how many it
    finished; the slice learns of the chunk when all of it is done.
    """

    __slots__ = ("decode_key", "done", "messages", "part", "pos", "state", "values")

    def __init__(
        self,
        state: PartitionState,
        part: Slice,
        messages: Sequence[Message],
        values: Sequence[Any],
        decode_key: KeyDecoder,
    ) -> None:
        self.state = state
        self.part = part
        self.messages = messages
        self.values = values
        self.decode_key = decode_key
        self.pos = 0
        self.done = 0

    def finish(self, count: int) -> None:
        """Mark ``count`` more values processed."""
        self.done += count
        if self.done >= len(self.values):
            self.part.remaining -= len(self.values)
            self.part.solo = None  # slice -> chunk -> slice would leave every batch to the cycle collector


class ChunkQueue:
    """A bounded FIFO of chunks with peek and push-back, and a stop signal that jumps the line."""

    def __init__(self, capacity: int, on_processed: Callable[[int], None], report_every: int = 100) -> None:
        self.capacity = capacity
        self.on_processed = on_processed
        self.report_every = max(1, report_every)
        self._items: deque[Chunk] = deque()
        self._stopped = False
        self._idle = asyncio.Event()  # the reader waits for work with nothing in hand
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, chunk: Chunk) -> None:
        while len(self._items) >= self.capacity and not self._stopped:
            self._writable.clear()
            await self._writable.wait()
        self._items.append(chunk)
        self._idle.clear()
        self._readable.set()

    @property
    def is_drained(self) -> bool:
        """Every queued chunk is finished and the reader asks for more (or the queue stopped)."""
        return self._stopped or (self._idle.is_set() and not self._items)

    async def drained(self) -> None:
        """Wait until :attr:`is_drained` (``put`` clears the idle flag, so this cannot spin)."""
        while not self.is_drained:
            await self._idle.wait()

    def push_back(self, chunk: Chunk) -> None:
        self._items.appendleft(chunk)
        self._readable.set()

    def stop(self) -> None:
        """Wake the reader and make it end; queued chunks stay unprocessed (and uncommitted)."""
        self._stopped = True
        self._readable.set()
        self._writable.set()
        self._idle.set()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def take_nowait(self) -> Chunk | None:
        """The next live chunk, or None if none is queued (or the queue is stopped)."""
        items = self._items
        while items and not self._stopped:
            chunk = items.popleft()
            if len(items) < self.capacity:
                self._writable.set()
            if chunk.state.active and not chunk.state.stopped:
                return chunk
        return None

    async def take(self, wait: float | None = None) -> Chunk | None:
        """Wait (up to ``wait`` seconds, or for ever) for the next live chunk; None on stop or timeout."""
        while True:
            chunk = self.take_nowait()
            if chunk is not None:
                # Let the fetch loop, the committer and window closing run between chunks: an agent
                # that always finds work queued would otherwise never give the event loop back.
                await asyncio.sleep(0)
                if chunk.state.active and not chunk.state.stopped:  # still ours after that turn
                    return chunk
                continue
            if self._stopped:
                return None
            self._readable.clear()
            if wait is None:  # nothing in hand: a checkpoint that waits for the agents may go ahead
                self._idle.set()
                try:
                    await self._readable.wait()
                finally:
                    self._idle.clear()
            else:
                try:
                    async with asyncio.timeout(wait):
                        await self._readable.wait()
                except TimeoutError:
                    return None

    def peek(self) -> Chunk | None:
        return self._items[0] if self._items and not self._stopped else None


#: The stream of the agent instance running in this task; tables read its partition.
current_stream: contextvars.ContextVar[Stream | None] = contextvars.ContextVar("grey_current_stream", default=None)
#: The partition whose work runs in this task outside any agent (windows closing on the clock).
current_partition: contextvars.ContextVar[int | None] = contextvars.ContextVar("grey_current_partition",
                                                                                default=None)


class Stream:
    """What an agent function receives: ``async for value in stream`` or ``stream.batches()``."""

    def __init__(self, queue: ChunkQueue, name: str = "") -> None:
        self._queue = queue
        self._every = queue.report_every
        self.name = name
        self._chunk: Chunk | None = None
        self._batch_parts: list[tuple[Chunk, int]] = []
        self.current_batch: Batch | None = None

    def __repr__(self) -> str:
        return f"<Stream {self.name}>"

    # -- per event -------------------------------------------------------

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Any:
        chunk = self._chunk
        if chunk is not None:
            done = chunk.done = chunk.done + 1  # the event in hand is finished
            size = len(chunk.values)
            every = self._every
            if done < size:
                if not done % every:  # lets a checkpoint fall inside a long chunk
                    self._queue.on_processed(every)
                return chunk.values[done]
            chunk.part.remaining -= size
            chunk.part.solo = None  # no slice -> chunk -> slice cycle for the cycle collector
            self._queue.on_processed(size - (size - 1) // every * every)
            self._chunk = None
        chunk = await self._queue.take()
        if chunk is None:
            raise StopAsyncIteration
        self._chunk = chunk
        return chunk.values[chunk.done]

    @property
    def partition(self) -> int | None:
        """The partition of the event or batch in hand (tables are partitioned the same way)."""
        chunk = self._chunk
        if chunk is not None:
            return chunk.state.tp.partition
        batch = self.current_batch
        return batch.partition if batch else None

    @property
    def group(self) -> str | None:
        """The partition group of the event or batch in hand (what its effects are committed with)."""
        chunk = self._chunk
        if chunk is not None:
            return chunk.state.group
        parts = self._batch_parts
        return parts[0][0].state.group if parts else None

    @property
    def current_key(self) -> Any:
        """The decoded key of the event in hand (None in batch mode or between events)."""
        chunk = self._chunk
        if chunk is None:
            return None
        return chunk.decode_key(chunk.messages[chunk.done].key)

    @property
    def current_timestamp(self) -> float:
        """The Kafka timestamp (seconds) of the event in hand, or of the last event of the batch."""
        chunk = self._chunk
        if chunk is not None:
            return chunk.messages[chunk.done].timestamp / 1000.0
        batch = self.current_batch
        if batch is None:
            raise LookupError("no event in hand")
        return batch.messages[-1].timestamp / 1000.0

    @property
    def current_event(self) -> Event | None:
        """The event whose value the agent holds now (key, headers, topic, partition, offset, timestamp)."""
        chunk = self._chunk
        if chunk is None:
            batch = self.current_batch
            return batch.events[-1] if batch else None
        message = chunk.messages[chunk.done]
        return Event(message, chunk.decode_key(message.key), chunk.values[chunk.done])

    async def events(self) -> AsyncIterator[Event]:
        """Iterate :class:`Event` objects instead of bare values."""
        async for _ in self:
            event = self.current_event
            assert event is not None
            yield event

    # -- batches ---------------------------------------------------------

    def _ack_batch(self) -> None:
        total = 0
        for chunk, count in self._batch_parts:
            chunk.finish(count)
            total += count
        self._batch_parts = []
        self.current_batch = None
        if total:
            self._queue.on_processed(total)

    async def batches(self, max: int = 1000, within: float | None = None) -> AsyncIterator[Batch]:  # noqa: A002
        """Yield lists of up to ``max`` values from one partition, in offset order.

        A batch holds what is already fetched; with ``within`` (seconds) it
        waits that long for more events of the same partition to fill up.
        A batch counts as processed when the agent asks for the next one.
        """
        if max < 1:
            raise ValueError(f"batches(max={max}): max must be >= 1")
        queue = self._queue
        loop = asyncio.get_running_loop()
        # No try/finally ack here: a batch the agent failed on must stay unacked.
        while True:
            self._ack_batch()
            first = await queue.take()
            if first is None:
                return
            messages: list[Message] = []
            values: list[Any] = []
            chunk: Chunk | None = first
            deadline = loop.time() + within if within else None
            while chunk is not None:
                start = chunk.pos
                end = min(len(chunk.values), start + max - len(values))
                if start == 0 and end == len(chunk.values):
                    messages.extend(chunk.messages)
                    values.extend(chunk.values)
                else:
                    messages.extend(chunk.messages[start:end])
                    values.extend(chunk.values[start:end])
                chunk.pos = end
                self._batch_parts.append((chunk, end - start))
                if end < len(chunk.values):  # the rest waits at the front for the next batch
                    queue.push_back(chunk)
                    break
                if len(values) >= max:
                    break
                chunk = self._same_partition(first.state)
                if chunk is None and deadline is not None:
                    left = deadline - loop.time()
                    if left > 0:
                        chunk = await queue.take(left)
                        if chunk is not None and chunk.state is not first.state:
                            queue.push_back(chunk)
                            chunk = None
            batch = Batch(values, messages, first.decode_key)
            self.current_batch = batch
            yield batch

    def _same_partition(self, state: PartitionState) -> Chunk | None:
        head = self._queue.peek()
        if head is not None and head.state is state:
            return self._queue.take_nowait()
        return None

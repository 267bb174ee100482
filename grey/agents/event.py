"""What an agent sees: values, and the Kafka facts about them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from grey.transport.base import Headers, Message


class Event:
    """One record as an agent sees it: decoded key and value, and where it came from."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, message: Message, key: Any, value: Any) -> None:
        self.key = key
        self.value = value
        self.headers: Headers = message.headers
        self.topic = message.topic
        self.partition = message.partition
        self.offset = message.offset
        self.timestamp = message.timestamp / 1000.0  # seconds since the epoch

    def __repr__(self) -> str:
        return f"<Event {self.topic}[{self.partition}]@{self.offset} key={self.key!r}>"


KeyDecoder = Callable[[bytes | None], Any]


class Batch(list[Any]):
    """Values of consecutive events of one partition; ``batch.events`` has their metadata."""

    __slots__ = ("_decode_key", "messages")

    def __init__(self, values: Sequence[Any], messages: Sequence[Message], decode_key: KeyDecoder) -> None:
        super().__init__(values)
        self.messages = messages
        self._decode_key = decode_key

    @property
    def topic(self) -> str:
        return self.messages[0].topic

    @property
    def partition(self) -> int:
        return self.messages[0].partition

    @property
    def first_offset(self) -> int:
        return self.messages[0].offset

    @property
    def last_offset(self) -> int:
        return self.messages[-1].offset

    @property
    def events(self) -> list[Event]:
        decode = self._decode_key
        return [Event(m, decode(m.key), v) for m, v in zip(self.messages, self, strict=True)]

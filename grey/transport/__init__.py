"""Transports: the byte-level boundary between grey and a broker."""

from __future__ import annotations

from grey.transport.base import (
    TP,
    Admin,
    BrokerConnectionError,
    ClientSettings,
    Consumer,
    Message,
    Producer,
    ProducerFencedError,
    TopicError,
    TopicSpec,
    Transport,
)

__all__ = [
    "TP",
    "Admin",
    "BrokerConnectionError",
    "ClientSettings",
    "Consumer",
    "Message",
    "Producer",
    "ProducerFencedError",
    "TopicError",
    "TopicSpec",
    "Transport",
    "open_transport",
]


def open_transport(url: str) -> Transport:
    """The transport for a broker URL: ``kafka://host:port[,...]`` or ``memory://name``."""
    if url.startswith("kafka://"):
        from grey.transport.kafka import KafkaTransport

        return KafkaTransport(url)
    if url.startswith("memory://"):
        from grey.transport.memory import MemoryTransport

        return MemoryTransport(url)
    raise ValueError(
        f"unsupported broker URL {url!r}: use kafka://host:port[,host:port] or memory://name"
    )

"""What the broker must hold before a worker starts: topics created, tables sized, partition groups named."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from grey.agents.spec import AgentSpec
from grey.config import ConfigError, Settings
from grey.tables.table import Table
from grey.topics import Topic
from grey.transport import Transport

log = logging.getLogger(__name__)


def group_labels(partition_counts: dict[str, int]) -> dict[str, str]:
    """Each source topic -> the name of its topic group (the first topic, by name, of its partition count).

    The range assignor gives partition p of every topic with the same count to
    the same worker, so ``{label}-{p}`` names one partition group.
    """
    first: dict[int, str] = {}
    for topic in sorted(partition_counts):
        first.setdefault(partition_counts[topic], topic)
    return {topic: first[count] for topic, count in partition_counts.items()}


async def prepare_topics(transport: Transport, conf: Settings, topics: Iterable[Topic], tables: Sequence[Table],
                         agents: Sequence[AgentSpec], *, consume: bool = True) -> dict[str, str]:
    """Create missing topics, size and check the tables; returns each source topic's group label."""
    admin = transport.admin(conf.client)
    await admin.start()
    try:
        before = await admin.list_topics()
        counts = {a.topic.name: before.get(a.topic.name, a.topic.spec().partitions) for a in agents}
        _size_tables(tables, set(counts.values()), conf.topic_partitions)
        declared = list(topics)
        created = await admin.create_topics([t.spec() for t in declared])
        if created:
            log.info("created topics: %s", ", ".join(created))
        existing = await admin.list_topics()
        if consume:
            _check_copartitioned(tables, agents, existing)
        for topic in declared:
            have = existing.get(topic.name)
            if topic.partitions and have is not None and have != topic.partitions:
                log.warning(
                    "topic %s exists with %d partitions but is declared with %d; the broker's %d are used "
                    "(declare partitions=%d, or add partitions with the Kafka tools)",
                    topic.name, have, topic.partitions, have, have,
                )
        return group_labels({a.topic.name: existing.get(a.topic.name, counts[a.topic.name]) for a in agents})
    finally:
        await admin.stop()


def _size_tables(tables: Sequence[Table], counts: set[int], default: int) -> None:
    """Tables declared without ``partitions`` take the partition count of the agents' topics."""
    count = counts.pop() if len(counts) == 1 else default
    for table in tables:
        if table.partitions is None:
            table.use_partitions(count)


def _check_copartitioned(tables: Sequence[Table], agents: Sequence[AgentSpec], existing: dict[str, int]) -> None:
    """A table's partition p holds the state of partition p of every source topic: counts must match."""
    for agent in agents:
        have = existing.get(agent.topic.name, agent.topic.spec().partitions)
        for table in tables:
            if have != table.partitions:
                raise ConfigError(
                    f"table {table.name!r} has {table.partitions} partitions but agent {agent.name}'s topic "
                    f"{agent.topic.name!r} has {have}: tables must be co-partitioned with the topics of "
                    f"the agents that use them (declare app.Table(..., partitions={have}))"
                )

"""Rebuild a table partition from its changelog before its events are processed.

The store remembers the changelog offset of its last write; recovery reads
from the next offset to the high watermark and applies each fetched batch in
one store write with its last offset. If retention removed offsets the store
has not seen, the partition is rebuilt from the earliest offset. Compaction
gaps, transaction markers and aborted records need nothing special: offsets
only move forward and the consumer reads committed records.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

from grey.tables.table import Table
from grey.transport import TP, ClientSettings, Transport

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Recovered:
    """What one partition's recovery did."""

    table: str
    partition: int
    records: int
    first: int | None
    last: int | None
    seconds: float
    rebuilt: bool

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


async def recover_partition(table: Table, number: int, transport: Transport, settings: ClientSettings) -> Recovered:
    """Bring ``table`` partition ``number`` up to its changelog's high watermark."""
    started = time.monotonic()
    store = table.open_partition(number)
    tp = TP(table.changelog.name, number)
    reader = transport.consumer(dataclasses.replace(settings, group_id="", auto_offset_reset="earliest",
                                                    isolation_level="read_committed"))
    await reader.start()
    rebuilt = False
    records = 0
    first: int | None = None
    last: int | None = None
    try:
        reader.assign([tp])
        earliest = (await reader.beginning_offsets([tp]))[tp]
        end = (await reader.end_offsets([tp]))[tp]
        stored = store.offset()
        start = earliest if stored is None else stored + 1
        if stored is not None and start < earliest:
            log.warning("table %s[%d]: changelog offsets %d..%d were removed by retention; rebuilding from %d",
                        table.name, number, start, earliest - 1, earliest)
            store.clear()
            start, rebuilt = earliest, True
        if start >= end:
            return Recovered(table.name, number, 0, None, None, time.monotonic() - started, rebuilt)
        log.info("table %s[%d]: recovering changelog offsets %d..%d", table.name, number, start, end - 1)
        reader.seek(tp, start)
        next_report = started + 5.0
        while await reader.position(tp) < end:
            found = await reader.getmany(timeout_ms=500, max_records=10_000)
            messages = found.get(tp, [])
            if not messages:
                continue
            store.write({m.key: m.value for m in messages if m.key is not None}, messages[-1].offset)
            records += len(messages)
            first = messages[0].offset if first is None else first
            last = messages[-1].offset
            now = time.monotonic()
            if now > next_report:
                log.info("table %s[%d]: %d records so far, at offset %d of %d (%.0f records/s)",
                         table.name, number, records, last, end - 1, records / (now - started))
                next_report = now + 5.0
    finally:
        await reader.stop()
    done = Recovered(table.name, number, records, first, last, time.monotonic() - started, rebuilt)
    log.info("table %s[%d]: recovered %d records (offsets %s..%s) in %.2fs, %.0f records/s",
             table.name, number, done.records, first, last, done.seconds, done.rate)
    return done

"""Tables: RocksDB (or memory) state per partition, changelogged to Kafka and recovered after crashes.

Windows, idempotency keys and the ``grey tables`` command are still to come
(see the tables issue); what is here is the keyed table, its stores, its
changelog and its recovery.
"""

from grey.tables.recovery import Recovered, recover_partition
from grey.tables.stores import ByteStore, MemoryStore, RocksStore, open_store
from grey.tables.table import Table, TableError

__all__ = [
    "ByteStore",
    "MemoryStore",
    "Recovered",
    "RocksStore",
    "Table",
    "TableError",
    "open_store",
    "recover_partition",
]

"""Tables: RocksDB (or memory) state per partition, changelogged to Kafka and recovered after crashes.

Windowed views (``table.tumbling``/``table.hopping``) and idempotency keys
are built on the keyed table.
"""

from grey.tables.aggregations import Aggregation, Avg, Count, Max, Min, Sum
from grey.tables.errors import TableError
from grey.tables.idempotency import IdempotencyKeys, idempotency_key
from grey.tables.recovery import Recovered, recover_partition
from grey.tables.stores import ByteStore, MemoryStore, RocksStore, open_store
from grey.tables.table import Table
from grey.tables.windows import Window, WindowedTable

__all__ = [
    "Aggregation",
    "Avg",
    "ByteStore",
    "Count",
    "IdempotencyKeys",
    "Max",
    "MemoryStore",
    "Min",
    "Recovered",
    "RocksStore",
    "Sum",
    "Table",
    "TableError",
    "Window",
    "WindowedTable",
    "idempotency_key",
    "open_store",
    "recover_partition",
]

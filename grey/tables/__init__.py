"""Tables (RocksDB state changelogged to Kafka) and windows.

Not built yet: this package is reserved for the tables issue. Nothing here
is importable as a feature.
"""

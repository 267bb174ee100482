"""The running side of an app: fetch loop, partition bookkeeping, commits."""

"""Prometheus counters grey keeps; no-ops when prometheus-client is not installed.

Names follow the case study's dashboards (``grey_events_processed_total``,
...). The HTTP endpoint that serves them arrives with the observability work;
until then they are in prometheus-client's default registry.
"""

from __future__ import annotations

from typing import Any, Protocol


class _Counter(Protocol):
    def labels(self, *values: str) -> Any: ...


class _NoCounter:
    """Stands in for a Counter when prometheus-client is missing."""

    def labels(self, *values: str) -> _NoCounter:
        return self

    def inc(self, amount: float = 1) -> None:
        return None

    def observe(self, amount: float) -> None:
        return None


def _counter(name: str, help_text: str, labels: list[str]) -> _Counter:
    try:
        from prometheus_client import Counter
    except ImportError:  # the 'prometheus' extra is not installed
        return _NoCounter()
    return Counter(name, help_text, labels)


def _histogram(name: str, help_text: str, labels: list[str], buckets: tuple[float, ...]) -> _Counter:
    try:
        from prometheus_client import Histogram
    except ImportError:
        return _NoCounter()
    return Histogram(name, help_text, labels, buckets=buckets)


EVENTS_PROCESSED = _counter("grey_events_processed", "Events the agents finished, per app", ["app"])
DECODE_ERRORS = _counter("grey_decode_errors", "Records that could not be decoded, per topic", ["topic"])
LATE_EVENTS = _counter("grey_late_events", "Events that came after their window closed, per table", ["table"])
WINDOWS_CLOSED = _counter("grey_windows_closed", "Windows closed and emitted, per table", ["table"])
TRANSACTIONS = _counter("grey_transactions", "Transactions begun, per app", ["app"])
TRANSACTIONS_COMMITTED = _counter("grey_transactions_committed", "Transactions committed, per app", ["app"])
TRANSACTIONS_ABORTED = _counter("grey_transactions_aborted", "Transactions aborted, per app and reason",
                                ["app", "reason"])
COMMIT_SECONDS = _histogram(
    "grey_transaction_commit_seconds", "Time from the start of a checkpoint to its commit, per app", ["app"],
    (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

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


def _counter(name: str, help_text: str, labels: list[str]) -> _Counter:
    try:
        from prometheus_client import Counter
    except ImportError:  # the 'prometheus' extra is not installed
        return _NoCounter()
    return Counter(name, help_text, labels)


EVENTS_PROCESSED = _counter("grey_events_processed", "Events the agents finished, per app", ["app"])
DECODE_ERRORS = _counter("grey_decode_errors", "Records that could not be decoded, per topic", ["topic"])
LATE_EVENTS = _counter("grey_late_events", "Events that came after their window closed, per table", ["table"])
WINDOWS_CLOSED = _counter("grey_windows_closed", "Windows closed and emitted, per table", ["table"])

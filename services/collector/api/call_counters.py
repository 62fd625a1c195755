"""Counters a caller reads after (or during) a run: how hard the API was used.

Kept as plain numbers so the collector can log them, put them in its run history
and export them as metrics without this package knowing about any of that.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class CountersSnapshot:
    """A frozen copy of the counters at one moment."""

    requests: Mapping[str, int]
    """HTTP requests sent, by API method (``execute`` counts once)."""
    calls: Mapping[str, int]
    """API method calls made, by method, whether alone or inside ``execute``."""
    errors: Mapping[int, int]
    """API errors received, by error code (inside ``execute`` too)."""
    transport_errors: int
    """HTTP 5xx, network failures and unreadable responses."""
    retries: int
    rate_limit_waits: int
    """Requests that had to wait for the client-side rate limiter."""
    rate_limit_wait_s: float

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())


@dataclass
class ApiCounters:
    """Mutable counters owned by one client."""

    requests: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    errors: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_s: float = 0.0

    def snapshot(self) -> CountersSnapshot:
        return CountersSnapshot(
            requests=MappingProxyType(dict(self.requests)),
            calls=MappingProxyType(dict(self.calls)),
            errors=MappingProxyType(dict(self.errors)),
            transport_errors=self.transport_errors,
            retries=self.retries,
            rate_limit_waits=self.rate_limit_waits,
            rate_limit_wait_s=self.rate_limit_wait_s,
        )

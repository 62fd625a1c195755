"""Service throughput from the services' own ``/metrics``: rates of their counters.

Lag says how far behind a group is; throughput says whether the service behind
it is doing anything at all. Every service exposes counters named
``social_loyalty_<service>_..._total`` (events, commands, API calls, dead
letters). The monitor scrapes each service at every sample, and this module
turns two consecutive readings into per-second rates, the way Prometheus'
``rate()`` does: a counter that went down means the process restarted and
counted from zero, so its whole current value is the increase.

Only ``social_loyalty_*_total`` series count: the default registry also
exports ``process_cpu_seconds_total`` and ``python_gc_*_total``, which are not
work done. A counter with labels (``result="ok"``/``"dead_letter"``) is summed
over its labels; "throughput" is the sum of the rates of the counters that
count what flows through the system (events, records, commands, messages,
runs), with the per-counter rates beside it for the detail. Two kinds of
counter are listed with their own rate but never added in:

- a quantity with a unit (``..._seconds_total``: time spent waiting;
  ``..._points_total``: points moved; ``..._bytes_total``): seconds plus events
  is no figure at all;
- the work every collection run repeats whether anything changed or not
  (``RECURRING_WORK``: the collector's API requests and calls, the member ids
  and likers it read, the snapshot messages it published, the detector's diff of
  each of those chunks). It grows with the size of the groups watched, not with
  what happens in them: after the demo's story, with nothing happening, it was
  1,550 objects read and 44 chunks diffed per second, so the chart of a system
  at rest read 1,600 "things" per second. A run still counts once
  (``..._runs_total``), so a collector that is collecting is not at zero.

Pure: readings in, rates out; the HTTP edge is ``scrape.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

COUNTER_PREFIX = "social_loyalty_"
COUNTER_SUFFIX = "_total"
UNIT_SUFFIXES = ("_seconds_total", "_points_total", "_bytes_total")
"""Counters of an amount, not of occurrences: left out of the throughput sum."""


RECURRING_WORK = frozenset(
    {
        "social_loyalty_collector_api_requests_total",
        "social_loyalty_collector_api_calls_total",
        "social_loyalty_collector_rate_limit_waits_total",
        "social_loyalty_collector_objects_read_total",
        "social_loyalty_collector_snapshot_messages_total",
        "social_loyalty_detector_chunks_total",
    }
)
"""Counters of what each collection run re-reads and re-diffs of an unchanged group:
left out of the throughput sum (services/collector/run_metrics.py, services/detector)."""


def counts_occurrences(name: str) -> bool:
    """Whether a counter's rate is things per second (and may be added to the others')."""
    return not name.endswith(UNIT_SUFFIXES)


def counts_in_throughput(name: str) -> bool:
    """Whether a counter's rate is part of the service's throughput: occurrences of
    what flows through the system, not a run's fixed re-reading of its groups."""
    return counts_occurrences(name) and name not in RECURRING_WORK


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """A service to scrape: its name on the page and the base URL of its HTTP edge."""

    name: str
    url: str

    @property
    def metrics_url(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/metrics") else base + "/metrics"


@dataclass(frozen=True, slots=True)
class Reading:
    """One scrape: the service's counters at ``time``, or why it could not be read."""

    time: float
    counters: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CounterRate:
    name: str
    total: float
    rate: float | None  # per second; None until two readings exist


@dataclass(frozen=True, slots=True)
class ServiceRates:
    service: str
    url: str
    up: bool
    scraped_at: float
    throughput: float | None
    counters: tuple[CounterRate, ...]
    error: str | None = None


ThroughputState = Mapping[str, Reading]
"""The last successful reading of each service, carried from one sample to the next."""


def parse_counters(text: str, prefix: str = COUNTER_PREFIX) -> dict[str, float]:
    """Counter totals of a Prometheus text page, summed over labels, by series name.

    Raises ``ValueError`` on a page that is not Prometheus text.
    """
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(prefix) and sample.name.endswith(COUNTER_SUFFIX):
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals


def increase(previous: float, current: float) -> float:
    """How much a counter grew; a counter that went down restarted from zero."""
    return current - previous if current >= previous else current


def rates(target: ServiceTarget, previous: Reading | None, current: Reading) -> ServiceRates:
    """Per-second rates between two readings of one service."""
    if current.error is not None:
        return ServiceRates(
            service=target.name,
            url=target.url,
            up=False,
            scraped_at=current.time,
            throughput=None,
            counters=(),
            error=current.error,
        )
    elapsed = current.time - previous.time if previous is not None else 0.0
    before = previous.counters if previous is not None and elapsed > 0 else None
    counters = tuple(
        CounterRate(
            name,
            total,
            # A counter missing from the previous page was born since (labelled
            # counters appear on their first increment): it grew from zero.
            None if before is None else increase(before.get(name, 0.0), total) / elapsed,
        )
        for name, total in sorted(current.counters.items())
    )
    throughput = (
        None
        if before is None
        else sum(c.rate or 0.0 for c in counters if counts_in_throughput(c.name))
    )
    return ServiceRates(
        service=target.name,
        url=target.url,
        up=True,
        scraped_at=current.time,
        throughput=throughput,
        counters=counters,
    )


def evaluate_services(
    state: ThroughputState,
    targets: Sequence[ServiceTarget],
    readings: Mapping[str, Reading],
) -> tuple[ThroughputState, tuple[ServiceRates, ...]]:
    """Fold one round of scrapes into the state; a failed scrape keeps the last good reading,
    so the first rate after an outage averages over the outage instead of being lost."""
    next_state = dict(state)
    result: list[ServiceRates] = []
    for target in targets:
        current = readings.get(target.name, Reading(time=0.0, error="not scraped"))
        result.append(rates(target, state.get(target.name), current))
        if current.error is None:
            next_state[target.name] = current
    return next_state, tuple(result)


def services_to_json(services: Sequence[ServiceRates]) -> list[dict[str, Any]]:
    """The ``services`` part of ``/api/lag``."""
    return [
        {
            "service": s.service,
            "url": s.url,
            "up": s.up,
            "scraped_at": s.scraped_at,
            "throughput": s.throughput,
            "error": s.error,
            "counters": [{"name": c.name, "total": c.total, "rate": c.rate} for c in s.counters],
        }
        for s in services
    ]

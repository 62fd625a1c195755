"""Prometheus metrics of the collector, served on ``/metrics`` (port 8082).

The API clients keep plain counters per run; ``record_run`` adds a finished
run's counters to the registry the collector was given, so the clients stay free of
Prometheus.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.collector.api import CountersSnapshot
from services.runtime.metric_set import MetricSet


class CollectorMetrics(MetricSet):
    """The collector's metrics: API traffic and runs, by network."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.api_requests = self.counter(
            "social_loyalty_collector_api_requests_total",
            "HTTP requests sent to a social network's API (execute counts once).",
            "network",
            "method",
        )
        self.api_calls = self.counter(
            "social_loyalty_collector_api_calls_total",
            "API method calls made, alone or inside execute.",
            "network",
            "method",
        )
        self.api_errors = self.counter(
            "social_loyalty_collector_api_errors_total",
            "API errors received, by error code ('transport' for HTTP 5xx and network errors).",
            "network",
            "code",
        )
        self.rate_limit_waits = self.counter(
            "social_loyalty_collector_rate_limit_waits_total",
            "Requests that waited for the client-side rate limiter.",
            "network",
        )
        self.rate_limit_wait_seconds = self.counter(
            "social_loyalty_collector_rate_limit_wait_seconds_total",
            "Seconds spent waiting for the client-side rate limiter.",
            "network",
        )
        self.objects_read = self.counter(
            "social_loyalty_collector_objects_read_total",
            "Member ids, likers, reposters and comments read.",
            "network",
        )
        self.runs = self.counter(
            "social_loyalty_collector_runs_total",
            "Collection runs by final status (succeeded, failed, aborted, busy).",
            "network",
            "status",
        )
        self.run_duration = self.histogram(
            "social_loyalty_collector_run_duration_seconds",
            "Wall time of a collection run, from lock to commit or failure.",
            "network",
            "status",
            buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
        )
        self.messages_published = self.counter(
            "social_loyalty_collector_snapshot_messages_total",
            "Snapshot messages committed to social.snapshots.",
            "network",
        )

    def record_api(self, network: str, counters: CountersSnapshot) -> None:
        """Add a finished run's API counters."""
        for method, n in counters.requests.items():
            self.api_requests.labels(network, method).inc(n)
        for method, n in counters.calls.items():
            self.api_calls.labels(network, method).inc(n)
        for code, n in counters.errors.items():
            self.api_errors.labels(network, str(code)).inc(n)
        if counters.transport_errors:
            self.api_errors.labels(network, "transport").inc(counters.transport_errors)
        self.rate_limit_waits.labels(network).inc(counters.rate_limit_waits)
        self.rate_limit_wait_seconds.labels(network).inc(counters.rate_limit_wait_s)

    def record_run(
        self, network: str, status: str, duration_s: float, objects_read: int, messages: int
    ) -> None:
        """Count a finished run: its status, duration, objects read and messages sent."""
        self.runs.labels(network, status).inc()
        self.run_duration.labels(network, status).observe(duration_s)
        self.objects_read.labels(network).inc(objects_read)
        self.messages_published.labels(network).inc(messages)

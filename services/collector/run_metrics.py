"""Prometheus metrics of the collector, served on ``/metrics`` (port 8082).

The API clients keep plain counters per run; ``record_run`` adds a finished
run's counters here, so the clients stay free of Prometheus.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from services.collector.api import CountersSnapshot

API_REQUESTS = Counter(
    "social_loyalty_collector_api_requests_total",
    "HTTP requests sent to a social network's API (execute counts once).",
    ["network", "method"],
)
API_CALLS = Counter(
    "social_loyalty_collector_api_calls_total",
    "API method calls made, alone or inside execute.",
    ["network", "method"],
)
API_ERRORS = Counter(
    "social_loyalty_collector_api_errors_total",
    "API errors received, by error code ('transport' for HTTP 5xx and network errors).",
    ["network", "code"],
)
RATE_LIMIT_WAITS = Counter(
    "social_loyalty_collector_rate_limit_waits_total",
    "Requests that waited for the client-side rate limiter.",
    ["network"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "social_loyalty_collector_rate_limit_wait_seconds_total",
    "Seconds spent waiting for the client-side rate limiter.",
    ["network"],
)
OBJECTS_READ = Counter(
    "social_loyalty_collector_objects_read_total",
    "Member ids, likers, reposters and comments read.",
    ["network"],
)
RUNS = Counter(
    "social_loyalty_collector_runs_total",
    "Collection runs by final status (succeeded, failed, aborted, busy).",
    ["network", "status"],
)
RUN_DURATION = Histogram(
    "social_loyalty_collector_run_duration_seconds",
    "Wall time of a collection run, from lock to commit or failure.",
    ["network", "status"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
MESSAGES_PUBLISHED = Counter(
    "social_loyalty_collector_snapshot_messages_total",
    "Snapshot messages committed to social.snapshots.",
    ["network"],
)


def record_api(network: str, counters: CountersSnapshot) -> None:
    for method, n in counters.requests.items():
        API_REQUESTS.labels(network, method).inc(n)
    for method, n in counters.calls.items():
        API_CALLS.labels(network, method).inc(n)
    for code, n in counters.errors.items():
        API_ERRORS.labels(network, str(code)).inc(n)
    if counters.transport_errors:
        API_ERRORS.labels(network, "transport").inc(counters.transport_errors)
    RATE_LIMIT_WAITS.labels(network).inc(counters.rate_limit_waits)
    RATE_LIMIT_WAIT_SECONDS.labels(network).inc(counters.rate_limit_wait_s)


def record_run(
    network: str, status: str, duration_s: float, objects_read: int, messages: int
) -> None:
    RUNS.labels(network, status).inc()
    RUN_DURATION.labels(network, status).observe(duration_s)
    OBJECTS_READ.labels(network).inc(objects_read)
    MESSAGES_PUBLISHED.labels(network).inc(messages)

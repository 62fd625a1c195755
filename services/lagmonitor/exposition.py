"""Prometheus exposition of the latest snapshot.

A custom collector renders the newest ``Snapshot`` at scrape time instead of
setting gauges as samples arrive: a group, topic or partition that vanished
from the cluster vanishes from ``/metrics`` with the next sample, with no stale
series to clean up.

Names and labels are those of the exporters people already run, so their
dashboards and alerts fit: kafka_exporter's ``kafka_consumergroup_lag``,
``..._current_offset`` and ``..._members`` with the label ``consumergroup``, its
``kafka_topic_partition_current_offset`` / ``..._oldest_offset``; and
kafka-lag-exporter's ``kafka_consumergroup_group_lag_seconds`` with the label
``group``. Every Kafka series carries ``cluster_name`` (kafka-lag-exporter's
name for it; kafka_exporter has none) and every group series ``replay``
("true" for replay groups) so alerts can say ``replay="false"``.

Status is ``kafka_consumergroup_status_code`` per partition (OK=0 WARN=1
REWIND=2 STALL=3 STOP=4 ERR=5: ``== 3`` is a STALL alert, the value a graph);
only the group status is also one-hot (six series per group, not per partition).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from services.lagmonitor.burrow import Status
from services.lagmonitor.core import Snapshot
from services.lagmonitor.throughput import ServiceRates

GROUP_LABEL = "consumergroup"
"""kafka_exporter's name for the consumer group, on every series but the time lag."""
LAG_EXPORTER_GROUP_LABEL = "group"
"""kafka-lag-exporter's, on ``kafka_consumergroup_group_lag_seconds``."""
CLUSTER_LABEL = "cluster_name"

PARTITION_LABELS = [CLUSTER_LABEL, GROUP_LABEL, "topic", "partition", "replay"]
TIME_LAG_LABELS = [CLUSTER_LABEL, LAG_EXPORTER_GROUP_LABEL, "topic", "partition", "replay"]
GROUP_LABELS = [CLUSTER_LABEL, GROUP_LABEL, "replay"]
TOPIC_LABELS = [CLUSTER_LABEL, "topic", "partition"]


def _replay(flag: bool) -> str:
    return "true" if flag else "false"


def snapshot_metrics(snapshot: Snapshot, cluster: str = "local") -> list[Metric]:
    """The metric families of one snapshot (pure: what a scrape would show)."""
    lag = GaugeMetricFamily(
        "kafka_consumergroup_lag",
        "Offset lag: log end offset (high watermark) minus committed offset.",
        labels=PARTITION_LABELS,
    )
    lag_seconds = GaugeMetricFamily(
        "kafka_consumergroup_group_lag_seconds",
        "Time lag: seconds since the log end was at the committed offset (interpolated).",
        labels=TIME_LAG_LABELS,
    )
    current = GaugeMetricFamily(
        "kafka_consumergroup_current_offset",
        "Committed offset of the group on the partition.",
        labels=PARTITION_LABELS,
    )
    status_code = GaugeMetricFamily(
        "kafka_consumergroup_status_code",
        "Burrow status of the partition: OK=0 WARN=1 REWIND=2 STALL=3 STOP=4 ERR=5.",
        labels=PARTITION_LABELS,
    )
    group_status = GaugeMetricFamily(
        "kafka_consumergroup_group_status",
        "Worst partition status of the group, one-hot over the status label.",
        labels=[*GROUP_LABELS, "status"],
    )
    group_status_code = GaugeMetricFamily(
        "kafka_consumergroup_group_status_code",
        "Worst partition status of the group as a number (as ..._status_code).",
        labels=GROUP_LABELS,
    )
    members = GaugeMetricFamily(
        "kafka_consumergroup_members",
        "Members of the consumer group.",
        labels=GROUP_LABELS,
    )
    state = GaugeMetricFamily(
        "kafka_consumergroup_state",
        "Group coordinator state (Stable, Empty, ...), one-hot over the state label.",
        labels=[*GROUP_LABELS, "state"],
    )
    topic_end = GaugeMetricFamily(
        "kafka_topic_partition_current_offset",
        "Log end offset (high watermark) of the partition.",
        labels=TOPIC_LABELS,
    )
    topic_oldest = GaugeMetricFamily(
        "kafka_topic_partition_oldest_offset",
        "Earliest offset still in the log (low watermark) of the partition.",
        labels=TOPIC_LABELS,
    )
    topic_stable = GaugeMetricFamily(
        "kafka_topic_partition_stable_offset",
        "Last stable offset of the partition (where read_committed readers stop).",
        labels=TOPIC_LABELS,
    )
    for group in snapshot.groups:
        replay = _replay(group.replay)
        group_labels = [cluster, group.group, replay]
        members.add_metric(group_labels, group.members)
        state.add_metric([*group_labels, group.state], 1)
        group_status_code.add_metric(group_labels, group.status.code)
        for s in Status:
            group_status.add_metric([*group_labels, s.value], int(s is group.status))
        for p in group.partitions:
            labels = [cluster, group.group, p.topic, str(p.partition), replay]
            if p.lag is not None:
                lag.add_metric(labels, p.lag)
            if p.time_lag_s is not None:
                lag_seconds.add_metric(labels, p.time_lag_s)
            if p.committed_offset is not None:
                current.add_metric(labels, p.committed_offset)
            status_code.add_metric(labels, p.status.code)
    for t in snapshot.topics:
        where = [cluster, t.topic, str(t.partition)]
        topic_end.add_metric(where, t.end_offset)
        if t.earliest_offset is not None:
            topic_oldest.add_metric(where, t.earliest_offset)
        if t.stable_offset is not None:
            topic_stable.add_metric(where, t.stable_offset)
    return [
        lag,
        lag_seconds,
        current,
        status_code,
        group_status,
        group_status_code,
        members,
        state,
        topic_end,
        topic_oldest,
        topic_stable,
    ]


def service_metrics(services: Sequence[ServiceRates]) -> list[Metric]:
    """Up/down and throughput of the scraped services (pure, like ``snapshot_metrics``).

    Prometheus scrapes the services itself; these series exist so the monitor's
    own view (what the page showed) can be graphed and alerted on in one place.
    """
    up = GaugeMetricFamily(
        "lagmonitor_service_up",
        "1 if the service's /metrics answered at the last sample, else 0.",
        labels=["service"],
    )
    throughput = GaugeMetricFamily(
        "lagmonitor_service_throughput",
        "Things flowing through the service per second: the sum of the rates of its "
        "social_loyalty_*_total counters, less amounts with a unit and the work each "
        "collection run repeats (services/lagmonitor/throughput.py).",
        labels=["service"],
    )
    counter_rate = GaugeMetricFamily(
        "lagmonitor_service_counter_rate",
        "Rate of one social_loyalty_*_total counter of the service (summed over labels), /s.",
        labels=["service", "counter"],
    )
    for service in services:
        up.add_metric([service.service], int(service.up))
        if service.throughput is not None:
            throughput.add_metric([service.service], service.throughput)
        for counter in service.counters:
            if counter.rate is not None:
                counter_rate.add_metric([service.service, counter.name], counter.rate)
    return [up, throughput, counter_rate]


def sample_age_metric(age_s: float, cluster: str = "local") -> Metric:
    """How old the end offsets behind the lag series are, at the moment of the scrape."""
    age = GaugeMetricFamily(
        "lagmonitor_sample_age_seconds",
        "Seconds since the end offsets of the last successful sample were read "
        "(computed at scrape time; keeps growing while Kafka is unreachable).",
        labels=[CLUSTER_LABEL],
    )
    age.add_metric([cluster], max(0.0, age_s))
    return age


class SnapshotCollector(Collector):
    """Renders whatever snapshot ``latest()`` returns at scrape time.

    ``last_good()`` is the last successful snapshot even while Kafka is down:
    the sample-age gauge is computed from it with ``clock`` at each scrape.
    """

    def __init__(
        self,
        latest: Callable[[], Snapshot | None],
        services: Callable[[], Sequence[ServiceRates]] = tuple,
        *,
        cluster: str = "local",
        last_good: Callable[[], Snapshot | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._latest = latest
        self._services = services
        self._cluster = cluster
        self._last_good = last_good or latest
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        snapshot = self._latest()
        if snapshot is not None:
            yield from snapshot_metrics(snapshot, self._cluster)
        last_good = self._last_good()
        if last_good is not None:
            yield sample_age_metric(self._clock() - last_good.sampled_at, self._cluster)
        services = self._services()
        if services:
            yield from service_metrics(services)

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: registering must not trigger a scrape."""
        return iter(())


class MonitorMetrics:
    """The monitor's own registry: lag series plus how its polling goes.

    ``kafka_up`` and ``last_success`` are what an alert watches when the lag
    series are absent: while the last sample failed, ``latest`` gives ``None``
    (figures that are no longer current are not exported as if they were).
    """

    def __init__(
        self,
        latest: Callable[[], Snapshot | None],
        services: Callable[[], Sequence[ServiceRates]] = tuple,
        *,
        cluster: str = "local",
        last_good: Callable[[], Snapshot | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(
            SnapshotCollector(latest, services, cluster=cluster, last_good=last_good, clock=clock)
        )
        self.poll_duration = Histogram(
            "lagmonitor_poll_duration_seconds",
            "Time to sample every watched group once.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.poll_errors = Counter(
            "lagmonitor_poll_errors",
            "Samples that failed as a whole (the cluster did not answer).",
            registry=self.registry,
        )
        self.partial_errors = Counter(
            "lagmonitor_sample_errors",
            "Groups or partitions a sample could not read (reported as ERR).",
            registry=self.registry,
        )
        self.kafka_up = Gauge(
            "lagmonitor_kafka_up",
            "1 if the last sample of Kafka succeeded, 0 if it failed or none finished yet.",
            registry=self.registry,
        )
        self.last_success = Gauge(
            "lagmonitor_last_success_timestamp_seconds",
            "Unix time of the last successful sample of Kafka (0: none since the monitor started).",
            registry=self.registry,
        )
        self.last_sample = Gauge(
            "lagmonitor_last_sample_timestamp_seconds",
            "Unix time the last sample of Kafka ended, whether it succeeded or not.",
            registry=self.registry,
        )

"""What Prometheus scrapes: the right series, the right values, nothing stale."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.lagmonitor.core import ClusterSample, GroupObservation
from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.settings import LagMonitorSettings

T = "social.events"


def scrape(monitor: LagMonitor) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(monitor.metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def sample(at: float, *groups: GroupObservation) -> ClusterSample:
    return ClusterSample(
        time=at,
        groups=groups,
        end_offsets={(T, 0): 10, (T, 1): 4},
        stable_offsets={(T, 0): 9, (T, 1): 4},
    )


def test_series_carry_the_snapshot_values() -> None:
    monitor = LagMonitor(LagMonitorSettings(window_size=3))
    rules = GroupObservation(
        "social-loyalty.rules",
        state="Stable",
        members=2,
        assigned=frozenset({(T, 0), (T, 1)}),
        committed={(T, 0): 4, (T, 1): 4},
    )
    replay = GroupObservation(
        "social-loyalty.rules.replay.o1", state="Empty", committed={(T, 0): 1}
    )
    monitor.apply(sample(100.0, rules, replay))
    got = scrape(monitor)
    c = {"cluster_name": "local"}
    p0 = labels(**c, consumergroup="social-loyalty.rules", topic=T, partition="0", replay="false")
    assert got[("kafka_consumergroup_lag", p0)] == 6
    assert got[("kafka_consumergroup_current_offset", p0)] == 4
    assert got[("kafka_consumergroup_status_code", p0)] == 0
    group = labels(**c, consumergroup="social-loyalty.rules", replay="false")
    assert got[("kafka_consumergroup_members", group)] == 2
    assert got[("kafka_consumergroup_group_status", group | {("status", "OK")})] == 1
    assert got[("kafka_consumergroup_group_status", group | {("status", "STALL")})] == 0
    assert got[("kafka_consumergroup_group_status_code", group)] == 0
    assert got[("kafka_topic_partition_current_offset", labels(**c, topic=T, partition="0"))] == 10
    assert got[("kafka_topic_partition_stable_offset", labels(**c, topic=T, partition="0"))] == 9
    r0 = labels(
        **c, consumergroup="social-loyalty.rules.replay.o1", topic=T, partition="0", replay="true"
    )
    assert got[("kafka_consumergroup_lag", r0)] == 9
    assert got[("kafka_consumergroup_state", group | {("state", "Stable")})] == 1
    # kafka-lag-exporter's time lag: its name, its label "group".
    t0 = labels(**c, group="social-loyalty.rules", topic=T, partition="0", replay="false")
    t1 = labels(**c, group="social-loyalty.rules", topic=T, partition="1", replay="false")
    # A time lag is not known from one sample, so there is no series rather than a wrong 0.
    assert ("kafka_consumergroup_group_lag_seconds", t0) not in got
    assert got[("kafka_consumergroup_group_lag_seconds", t1)] == 0
    # No per-partition one-hot status: one series per partition, not six.
    assert not any(name == "kafka_consumergroup_status" for name, _ in got)
    per_partition = [k for k in got if k[0] == "kafka_consumergroup_status_code"]
    assert len(per_partition) == 3


def test_every_kafka_series_carries_the_configured_cluster() -> None:
    monitor = LagMonitor(LagMonitorSettings(cluster="eu-1"))
    monitor.apply(sample(1.0, GroupObservation("social-loyalty.x", committed={(T, 0): 1})))
    kafka = [dict(k[1]) for k in scrape(monitor) if k[0].startswith("kafka_")]
    assert kafka
    assert all(series["cluster_name"] == "eu-1" for series in kafka)
    for series in kafka:
        assert "group" not in series or "consumergroup" not in series


def test_sample_age_is_computed_at_scrape_time_and_grows_while_kafka_is_down() -> None:
    now = [100.0]
    monitor = LagMonitor(LagMonitorSettings(), clock=lambda: now[0])
    assert not any(name == "lagmonitor_sample_age_seconds" for name, _ in scrape(monitor))
    monitor.apply(sample(97.5, GroupObservation("social-loyalty.x", committed={(T, 0): 1})))
    age = ("lagmonitor_sample_age_seconds", labels(cluster_name="local"))
    assert scrape(monitor)[age] == 2.5
    now[0] = 110.0
    assert scrape(monitor)[age] == 12.5
    monitor.fail("Kafka unreachable: test")
    got = scrape(monitor)
    assert got[age] == 12.5
    assert not any(name.startswith("kafka_") for name, _ in got)


def test_series_of_a_vanished_group_disappear() -> None:
    monitor = LagMonitor(LagMonitorSettings())
    gone = GroupObservation("social-loyalty.gone", committed={(T, 0): 1})
    stays = GroupObservation("social-loyalty.stays", committed={(T, 0): 2})
    monitor.apply(sample(1.0, gone, stays))
    monitor.apply(sample(2.0, stays))
    names = {dict(k[1]).get("consumergroup") for k in scrape(monitor)}
    assert "social-loyalty.stays" in names
    assert "social-loyalty.gone" not in names


def test_own_metrics_are_present_before_any_sample() -> None:
    monitor = LagMonitor(LagMonitorSettings())
    got = scrape(monitor)
    assert got[("lagmonitor_poll_errors_total", frozenset())] == 0
    assert ("lagmonitor_poll_duration_seconds_count", frozenset()) in got
    assert not any(name.startswith("kafka_") for name, _ in got)

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
    p0 = labels(group="social-loyalty.rules", topic=T, partition="0", replay="false")
    assert got[("kafka_consumergroup_lag", p0)] == 6
    assert got[("kafka_consumergroup_current_offset", p0)] == 4
    assert got[("kafka_consumergroup_status", p0 | {("status", "OK")})] == 1
    assert got[("kafka_consumergroup_status", p0 | {("status", "STALL")})] == 0
    assert got[("kafka_consumergroup_status_code", p0)] == 0
    assert (
        got[("kafka_consumergroup_members", labels(group="social-loyalty.rules", replay="false"))]
        == 2
    )
    assert got[("kafka_topic_partition_current_offset", labels(topic=T, partition="0"))] == 10
    assert got[("kafka_topic_partition_stable_offset", labels(topic=T, partition="0"))] == 9
    r0 = labels(group="social-loyalty.rules.replay.o1", topic=T, partition="0", replay="true")
    assert got[("kafka_consumergroup_lag", r0)] == 9
    state = labels(group="social-loyalty.rules", replay="false", state="Stable")
    assert got[("kafka_consumergroup_state", state)] == 1
    # A time lag is not known from one sample, so there is no series rather than a wrong 0.
    assert ("kafka_consumergroup_lag_seconds", p0) not in got
    p1 = labels(group="social-loyalty.rules", topic=T, partition="1", replay="false")
    assert got[("kafka_consumergroup_lag_seconds", p1)] == 0


def test_series_of_a_vanished_group_disappear() -> None:
    monitor = LagMonitor(LagMonitorSettings())
    gone = GroupObservation("social-loyalty.gone", committed={(T, 0): 1})
    stays = GroupObservation("social-loyalty.stays", committed={(T, 0): 2})
    monitor.apply(sample(1.0, gone, stays))
    monitor.apply(sample(2.0, stays))
    names = {dict(k[1]).get("group") for k in scrape(monitor)}
    assert "social-loyalty.stays" in names
    assert "social-loyalty.gone" not in names


def test_own_metrics_are_present_before_any_sample() -> None:
    monitor = LagMonitor(LagMonitorSettings())
    got = scrape(monitor)
    assert got[("lagmonitor_poll_errors_total", frozenset())] == 0
    assert ("lagmonitor_poll_duration_seconds_count", frozenset()) in got
    assert not any(name.startswith("kafka_") for name, _ in got)

"""Service throughput: counters scraped from the services' /metrics, turned into rates.

The scrape tests run a small aiohttp app that serves Prometheus text the way a
service's ``/metrics`` does (a real HTTP server on 127.0.0.1, no Kafka needed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter, generate_latest
from pydantic import ValidationError

from services.actions.command_metrics import CommandMetrics
from services.collector.run_metrics import CollectorMetrics
from services.detector.app import DetectorMetrics
from services.lagmonitor.core import ClusterSample, GroupObservation
from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.scrape import scrape_all
from services.lagmonitor.settings import LagMonitorSettings
from services.lagmonitor.throughput import (
    Reading,
    ServiceRates,
    ServiceTarget,
    ThroughputState,
    evaluate_services,
    increase,
    parse_counters,
    rates,
)
from services.lagmonitor.web import create_app
from services.rules.worker import RulesMetrics
from services.runtime.http import create_app as service_app
from services.runtime.stream import StreamMetrics
from tests.unit.lagmonitor.test_metrics import labels, scrape

PAGE = """\
# HELP social_loyalty_detector_events_total Events detected.
# TYPE social_loyalty_detector_events_total counter
social_loyalty_detector_events_total{kind="PostLiked"} 30.0
social_loyalty_detector_events_total{kind="GroupJoined"} 12.0
# HELP social_loyalty_detector_events_created Creation time.
# TYPE social_loyalty_detector_events_created gauge
social_loyalty_detector_events_created{kind="PostLiked"} 1.7e9
# HELP social_loyalty_detector_snapshots_total Snapshots read.
# TYPE social_loyalty_detector_snapshots_total counter
social_loyalty_detector_snapshots_total 5.0
# HELP process_cpu_seconds_total CPU.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 99.0
# HELP social_loyalty_detector_diff_seconds Diff time.
# TYPE social_loyalty_detector_diff_seconds histogram
social_loyalty_detector_diff_seconds_bucket{le="+Inf"} 5.0
social_loyalty_detector_diff_seconds_count 5.0
social_loyalty_detector_diff_seconds_sum 0.2
"""
DETECTOR = ServiceTarget("detector", "http://127.0.0.1:8083")


def test_only_the_services_counters_count_summed_over_labels() -> None:
    assert parse_counters(PAGE) == {
        "social_loyalty_detector_events_total": 42.0,
        "social_loyalty_detector_snapshots_total": 5.0,
    }


def test_throughput_adds_things_per_second_never_seconds_or_points() -> None:
    """The collector counts seconds spent waiting for its rate limiter and the ledger
    counts points: each is listed with its rate, neither is added to events per second."""
    runs = "social_loyalty_collector_runs_total"
    registry = CollectorRegistry()
    collector, actions = CollectorMetrics.on(registry), CommandMetrics.on(registry)
    waited = next(iter(collector.rate_limit_wait_seconds.describe())).name + "_total"
    points = next(iter(actions.ledger_points.describe())).name + "_total"
    assert (waited, points) == (
        "social_loyalty_collector_rate_limit_wait_seconds_total",
        "social_loyalty_actions_ledger_points_total",
    )
    before = Reading(100.0, {runs: 10.0, waited: 0.0, points: 0.0})
    after = Reading(110.0, {runs: 30.0, waited: 50.0, points: 500.0})
    got = rates(ServiceTarget("collector", "http://c:1"), before, after)
    assert got.throughput == 2.0  # 20 runs in 10 s; not 2 + 5 s/s + 50 points/s
    assert {c.name: c.rate for c in got.counters} == {runs: 2.0, waited: 5.0, points: 50.0}


def _page(registry: CollectorRegistry) -> dict[str, float]:
    """What the monitor reads from a service's /metrics: the text its registry renders."""
    return parse_counters(generate_latest(registry).decode())


def test_an_idle_system_reads_near_zero_while_the_collector_keeps_collecting() -> None:
    """After the demo's story nothing happens, yet the collector collects both groups
    every few seconds and the detector diffs every chunk it publishes. Those counters
    are real (the services' own metric sets, rendered as their /metrics renders them)
    and keep climbing: the chart once read ~1,600 "things" per second at rest
    (1,550 objects read and 44 chunks per second). The throughput counts the runs,
    not what each run re-reads, so the whole system at rest reads under one per second;
    the re-reading is still listed, counter by counter."""
    registries = {
        name: CollectorRegistry() for name in ("collector", "detector", "rules", "actions")
    }
    collector = CollectorMetrics.on(registries["collector"])
    detector = DetectorMetrics.on(registries["detector"])
    rules, stream = RulesMetrics.on(registries["rules"]), StreamMetrics.on(registries["rules"])
    actions = CommandMetrics.on(registries["actions"])
    # What the story left behind: totals that no longer move.
    stream.records.labels("demo.rules").inc(19)
    rules.events_evaluated.inc(19)
    actions.commands_applied.labels("bonus", "BonusCommand").inc(13)
    actions.ledger_points.labels("credited").inc(160)
    targets = [
        ServiceTarget(name, f"http://127.0.0.1:{port}") for port, name in enumerate(registries)
    ]

    def collect_once() -> None:
        # One demo collection round: the VK group (118 snapshot messages) and the OK
        # group (44), a few thousand member ids and likers read, nothing changed.
        for network, messages, objects, calls in (("vk", 118, 3_100, 73), ("ok", 44, 1_200, 20)):
            collector.record_run(network, "succeeded", 0.2, objects, messages)
            collector.api_calls.labels(network, "execute").inc(calls)
            collector.api_requests.labels(network, "execute").inc(calls // 5)
            detector.chunks.labels("unchanged").inc(messages)

    state: ThroughputState = {}
    services: tuple[ServiceRates, ...] = ()
    for second in range(0, 30, 5):  # a sample every 5 s; a round every 2.5 s
        collect_once()
        collect_once()
        readings = {t.name: Reading(1000.0 + second, _page(registries[t.name])) for t in targets}
        state, services = evaluate_services(state, targets, readings)
    by_service = {s.service: s for s in services}
    total = sum(s.throughput or 0.0 for s in services)
    assert total < 1.0, {s.service: s.throughput for s in services}
    assert by_service["collector"].throughput == pytest.approx(0.8)  # 2 runs per 2.5 s
    assert by_service["detector"].throughput == 0.0
    counters = {c.name: c.rate for c in by_service["collector"].counters}
    assert counters["social_loyalty_collector_objects_read_total"] == pytest.approx(1_720)


def test_what_flows_through_counts_in_full() -> None:
    """The same services while something happens: events, commands and records count."""
    registries = {name: CollectorRegistry() for name in ("detector", "rules")}
    detector = DetectorMetrics.on(registries["detector"])
    rules, stream = RulesMetrics.on(registries["rules"]), StreamMetrics.on(registries["rules"])
    targets = [ServiceTarget(name, "http://127.0.0.1:1") for name in registries]
    state: ThroughputState = {}
    services: tuple[ServiceRates, ...] = ()
    for second in (0, 5):
        detector.chunks.labels("changed").inc(10)
        detector.events.labels("PostLiked").inc(50)
        rules.events_evaluated.inc(50)
        rules.commands_emitted.labels("BonusCommand").inc(50)
        stream.records.labels("t.rules").inc(50)
        readings = {t.name: Reading(float(second), _page(registries[t.name])) for t in targets}
        state, services = evaluate_services(state, targets, readings)
    by_service = {s.service: s.throughput for s in services}
    assert by_service == {"detector": 10.0, "rules": 30.0}


def test_a_page_that_is_not_prometheus_text_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_counters("<html>hello</html>\n")


def test_rates_are_increase_over_elapsed_time() -> None:
    first = Reading(10.0, {"a_total": 100.0, "b_total": 7.0})
    second = Reading(12.0, {"a_total": 140.0, "b_total": 7.0, "c_total": 3.0})
    result = rates(DETECTOR, first, second)
    assert result.up
    by_name = {c.name: c.rate for c in result.counters}
    # c appeared since the previous page: a labelled counter born from zero.
    assert by_name == {"a_total": 20.0, "b_total": 0.0, "c_total": 1.5}
    assert result.throughput == 21.5


def test_a_restarted_service_counts_from_zero_again() -> None:
    assert increase(500.0, 30.0) == 30.0
    result = rates(DETECTOR, Reading(0.0, {"a_total": 500.0}), Reading(10.0, {"a_total": 30.0}))
    assert result.throughput == 3.0


def test_first_reading_has_totals_but_no_rate_yet() -> None:
    result = rates(DETECTOR, None, Reading(1.0, {"a_total": 5.0}))
    assert result.up
    assert result.throughput is None
    assert [(c.total, c.rate) for c in result.counters] == [(5.0, None)]


def test_a_failed_scrape_is_down_and_keeps_the_last_good_reading() -> None:
    state, _ = evaluate_services({}, [DETECTOR], {"detector": Reading(0.0, {"a_total": 0})})
    state, (down,) = evaluate_services(
        state, [DETECTOR], {"detector": Reading(5.0, error="HTTP 500")}
    )
    assert (down.up, down.error, down.throughput) == (False, "HTTP 500", None)
    state, (back,) = evaluate_services(
        state, [DETECTOR], {"detector": Reading(10.0, {"a_total": 50.0})}
    )
    assert back.up
    assert back.throughput == 5.0  # averaged over the outage, not lost


def test_services_setting_parses_name_url_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LAGMONITOR_SERVICES",
        "collector=http://127.0.0.1:8082, detector=http://127.0.0.1:8083/metrics,",
    )
    services = LagMonitorSettings().services
    assert [(s.name, s.metrics_url) for s in services] == [
        ("collector", "http://127.0.0.1:8082/metrics"),
        ("detector", "http://127.0.0.1:8083/metrics"),
    ]


@pytest.mark.parametrize(
    "value", ["collector", "collector=127.0.0.1:8082", "=http://x", "a=http://x,a=http://y"]
)
def test_a_bad_services_setting_is_refused_with_the_reason(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAGMONITOR_SERVICES", value)
    with pytest.raises(ValidationError, match="services"):
        LagMonitorSettings()


@asynccontextmanager
async def fake_service(registry: CollectorRegistry) -> AsyncIterator[str]:
    """A service's HTTP edge (the shared runtime one) serving ``registry`` on a free port."""
    server = TestServer(service_app("fake", registry=registry), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def test_scraping_a_live_service_gives_rates_and_a_dead_one_is_down() -> None:
    registry = CollectorRegistry()
    # prometheus_client exports these as ..._total (and ..._created, which is not work).
    events = Counter("social_loyalty_detector_events", "Events.", ["kind"], registry=registry)
    snapshots = Counter("social_loyalty_detector_snapshots", "Snapshots.", registry=registry)

    async def main() -> None:
        import aiohttp

        async with fake_service(registry) as url, aiohttp.ClientSession() as session:
            targets = [ServiceTarget("detector", url), ServiceTarget("gone", "http://127.0.0.1:9")]
            clock = iter([100.0, 100.0, 102.0, 102.0]).__next__
            first = await scrape_all(session, targets, 2.0, clock)
            events.labels("PostLiked").inc(6)
            events.labels("GroupJoined").inc(4)
            snapshots.inc(2)
            second = await scrape_all(session, targets, 2.0, clock)
        state, _ = evaluate_services({}, targets, first)
        _, (detector, gone) = evaluate_services(state, targets, second)
        assert detector.up
        assert {c.name: c.rate for c in detector.counters} == {
            "social_loyalty_detector_events_total": 5.0,
            "social_loyalty_detector_snapshots_total": 1.0,
        }
        assert detector.throughput == 6.0
        assert not gone.up
        assert gone.error

    asyncio.run(main())


def test_monitor_shows_services_in_json_history_stream_and_metrics() -> None:
    registry = CollectorRegistry()
    handled = Counter("social_loyalty_rules_events", "Events evaluated.", registry=registry)
    sample = ClusterSample(
        time=1.0,
        groups=(GroupObservation("social-loyalty.rules", committed={("t", 0): 1}),),
        end_offsets={("t", 0): 3},
    )

    async def main() -> None:
        async with fake_service(registry) as url:
            settings = LagMonitorSettings(
                services=(ServiceTarget("rules", url), ServiceTarget("down", "http://127.0.0.1:9"))
            )
            monitor = LagMonitor(settings)
            async with TestClient(TestServer(create_app(monitor, sample=False))) as client:
                monitor.apply_services(await monitor.scrape_services())
                handled.inc(30)
                monitor.apply_services(await monitor.scrape_services())
                monitor.apply(sample)
                document = await (await client.get("/api/lag")).json()
                services = {s["service"]: s for s in document["services"]}
                assert services["rules"]["up"] is True
                assert services["rules"]["throughput"] > 0
                assert (
                    services["rules"]["counters"][0]["name"] == "social_loyalty_rules_events_total"
                )
                assert services["rules"]["counters"][0]["total"] == 30.0
                assert services["down"]["up"] is False
                alone = await (await client.get("/api/services")).json()
                assert alone["services"] == document["services"]
                history = await (await client.get("/api/history")).json()
                assert history["points"][-1]["services"]["rules"] > 0
                series = scrape(monitor)
                assert series[("lagmonitor_service_up", labels(service="rules"))] == 1
                assert series[("lagmonitor_service_up", labels(service="down"))] == 0
                throughput = series[("lagmonitor_service_throughput", labels(service="rules"))]
                assert throughput == services["rules"]["throughput"]
            await monitor.close()

    asyncio.run(main())

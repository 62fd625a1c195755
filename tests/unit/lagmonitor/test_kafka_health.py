"""Kafka going away and coming back, as ``/readyz``, ``/metrics``, ``/api/lag`` and the
stream show it (hand-fed samples; the closed-port run is in integration)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.lagmonitor.core import ClusterSample, GroupObservation
from services.lagmonitor.monitor import LagMonitor
from services.lagmonitor.sampler import KafkaUnreachableError, Sampler
from services.lagmonitor.settings import LagMonitorSettings
from services.lagmonitor.web import create_app
from services.runtime.settings import KafkaSettings

Client = TestClient[web.Request, web.Application]
T = "social.events"
SAMPLE = ClusterSample(
    time=1_700_000_000.0,
    groups=(GroupObservation("social-loyalty.rules", committed={(T, 0): 3}),),
    end_offsets={(T, 0): 8},
)
SETTINGS = LagMonitorSettings(
    kafka=KafkaSettings(bootstrap_servers="broker:9092"), sample_interval_s=0.05, history_db=False
)


class FakeSampler(Sampler):
    """Answers with ``SAMPLE`` until told Kafka is gone."""

    def __init__(self) -> None:
        self.down = False

    def sample(
        self, prefixes: Iterable[str] | None = None, *, all_groups: bool | None = None
    ) -> ClusterSample:
        if self.down:
            raise KafkaUnreachableError("no broker at broker:9092 answered (Local: Timed out)")
        return SAMPLE


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def metrics(monitor: LagMonitor) -> dict[str, float]:
    text = generate_latest(monitor.metrics.registry).decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_kafka_down_then_back_is_told_everywhere() -> None:
    async def main() -> None:
        sampler, clock = FakeSampler(), Clock()
        monitor = LagMonitor(SETTINGS, sampler, clock=clock)
        async with TestClient(TestServer(create_app(monitor, sample=False))) as client:
            assert metrics(monitor)["lagmonitor_kafka_up"] == 0  # nothing sampled yet
            await monitor.poll_once()
            assert (await client.get("/readyz")).status == 200
            up = metrics(monitor)
            assert up["lagmonitor_kafka_up"] == 1
            assert up["lagmonitor_last_success_timestamp_seconds"] == clock.now
            assert up["kafka_consumergroup_lag"] == 5

            stream = await client.get("/api/stream")
            await stream.content.readuntil(b"\n\n")  # the current snapshot
            sampler.down = True
            clock.now += 30
            await monitor.poll_once()

            ready = await client.get("/readyz")
            reason = (await ready.json())["reason"]
            assert ready.status == 503
            assert reason.startswith("Kafka unreachable: no broker at broker:9092")
            assert "last successful sample 30 s ago" in reason
            down = metrics(monitor)
            assert down["lagmonitor_kafka_up"] == 0
            assert down["lagmonitor_last_success_timestamp_seconds"] == clock.now - 30
            assert down["lagmonitor_poll_errors_total"] == 1
            assert not [name for name in down if name.startswith("kafka_")]
            lag = await client.get("/api/lag")
            document = await lag.json()
            assert lag.status == 200  # the last good figures, marked as not current
            assert document["current"] is False
            assert document["kafka"]["reachable"] is False
            assert document["kafka"]["unreachable_since"] == clock.now
            assert document["groups"][0]["partitions"][0]["lag"] == 5
            event = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 5)
            message = json.loads(event.split(b"data: ", 1)[1])
            assert message["kafka"]["reachable"] is False
            assert message["snapshot"]["current"] is False
            stream.close()

            sampler.down = False
            clock.now += 5
            await monitor.poll_once()
            assert (await client.get("/readyz")).status == 200
            assert metrics(monitor)["lagmonitor_kafka_up"] == 1
            assert (await (await client.get("/api/lag")).json())["kafka"]["error"] is None

    asyncio.run(main())


def test_sampling_goes_on_after_a_sample_that_cannot_be_evaluated() -> None:
    async def main() -> None:
        monitor = LagMonitor(SETTINGS, FakeSampler())
        applied = monitor.apply
        calls = 0

        def apply_failing_once(sample: ClusterSample) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ArithmeticError("a bug in one sample's evaluation")
            return applied(sample)

        monitor.apply = apply_failing_once  # type: ignore[method-assign]
        task = asyncio.create_task(monitor.run())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert calls > 2
        assert monitor.ready()
        assert metrics(monitor)["lagmonitor_poll_errors_total"] == 1

    asyncio.run(main())


@dataclass
class Listing:
    valid: list[Any] = field(default_factory=list)
    errors: list[KafkaError] = field(default_factory=list)


class SilentAdmin:
    """What the admin client gives when no broker answers: an empty listing with errors."""

    def list_consumer_groups(self, request_timeout: float) -> Future[Listing]:
        future: Future[Listing] = Future()
        future.set_result(Listing(errors=[KafkaError(KafkaError._TIMED_OUT)]))
        return future


def test_an_empty_listing_with_errors_is_an_unreachable_cluster_not_an_idle_one() -> None:
    sampler = Sampler(SETTINGS, admin=cast(AdminClient, SilentAdmin()))
    with pytest.raises(KafkaUnreachableError, match="no broker at broker:9092 answered"):
        sampler.sample()

"""The sampling loop: sample, evaluate, publish to metrics, history and live listeners.

The sampler blocks on admin futures, so it runs in a worker thread; everything
else happens on the event loop, which owns the state (no locks needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiohttp

from services.lagmonitor.core import (
    ClusterSample,
    EvalConfig,
    MonitorState,
    Snapshot,
    evaluate,
    snapshot_to_json,
)
from services.lagmonitor.history import History, history_point, point_to_json
from services.lagmonitor.metrics import MonitorMetrics
from services.lagmonitor.sampler import Sampler
from services.lagmonitor.scrape import scrape_all
from services.lagmonitor.settings import LagMonitorSettings
from services.lagmonitor.throughput import (
    Reading,
    ServiceRates,
    ThroughputState,
    evaluate_services,
    services_to_json,
)

log = logging.getLogger(__name__)


def eval_config(settings: LagMonitorSettings) -> EvalConfig:
    return EvalConfig(
        window_size=settings.window_size,
        table_capacity=settings.lookup_table_size,
        stop_after_s=settings.stop_after_s,
    )


class LagMonitor:
    """Keeps the latest snapshot, its history, and the queues of live listeners."""

    def __init__(self, settings: LagMonitorSettings, sampler: Sampler | None = None) -> None:
        self.settings = settings
        self._sampler = sampler
        self.config = eval_config(settings)
        self.state = MonitorState()
        self.latest: Snapshot | None = None
        self.last_success_monotonic: float | None = None
        self.last_error: str | None = None
        self.history = History(settings.history_s)
        self.throughput_state: ThroughputState = {}
        self.services: tuple[ServiceRates, ...] = ()
        self.metrics = MonitorMetrics(lambda: self.latest, lambda: self.services)
        self._listeners: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._http: aiohttp.ClientSession | None = None

    @property
    def sampler(self) -> Sampler:
        """Built on first use: a monitor fed samples by hand never opens a Kafka client."""
        if self._sampler is None:
            self._sampler = Sampler(self.settings)
        return self._sampler

    def document(self) -> dict[str, Any] | None:
        """The ``/api/lag`` document: the latest snapshot plus service throughput."""
        if self.latest is None:
            return None
        return {**snapshot_to_json(self.latest), "services": services_to_json(self.services)}

    def apply_services(self, readings: dict[str, Reading]) -> tuple[ServiceRates, ...]:
        """Fold one round of service scrapes in; shown with the next snapshot."""
        self.throughput_state, self.services = evaluate_services(
            self.throughput_state, self.settings.services, readings
        )
        return self.services

    def apply(self, sample: ClusterSample) -> Snapshot:
        """Fold a sample in and tell everyone who listens."""
        self.state, snapshot = evaluate(self.state, sample, self.config)
        self.latest = snapshot
        self.last_success_monotonic = time.monotonic()
        self.last_error = None
        point = history_point(snapshot, self.services)
        self.history.append(point)
        errors = len(sample.errors) + len(sample.partition_errors)
        errors += sum(1 for g in sample.groups if g.error)
        if errors:
            self.metrics.partial_errors.inc(errors)
        message = {"snapshot": self.document(), "point": point_to_json(point)}
        for queue in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)
        return snapshot

    async def scrape_services(self) -> dict[str, Reading]:
        """One reading per configured service (none configured: nothing to do)."""
        if not self.settings.services:
            return {}
        if self._http is None:
            self._http = aiohttp.ClientSession()
        timeout = self.settings.service_timeout_s
        return await scrape_all(self._http, self.settings.services, timeout)

    async def close(self) -> None:
        """Release the HTTP client used for the services' /metrics."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def poll_once(self) -> Snapshot | None:
        """One sample; a failed sample counts as an error and leaves the last snapshot.

        The services are scraped while Kafka is being sampled, so a sample with
        services costs no more time than the slower of the two.
        """
        started = time.monotonic()
        scraping = asyncio.create_task(self.scrape_services())
        try:
            sample = await asyncio.to_thread(self.sampler.sample)
        except Exception as exc:  # the loop must outlive any one bad sample
            self.metrics.poll_errors.inc()
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("sample failed: %s", self.last_error)
            sample = None
        except BaseException:  # cancelled: do not leave the scrape behind
            scraping.cancel()
            raise
        readings = await scraping
        self.metrics.poll_duration.observe(time.monotonic() - started)
        # Services and snapshot change together, with no await in between, so a
        # request never sees one sample's lag with another sample's throughput.
        if self.settings.services:
            self.apply_services(readings)
        return None if sample is None else self.apply(sample)

    async def run(self) -> None:
        """Sample every ``sample_interval_s`` until cancelled; intervals do not drift."""
        interval = self.settings.sample_interval_s
        next_at = time.monotonic()
        while True:
            await self.poll_once()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow sample: skip the missed ticks instead of bursting
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    def ready(self) -> bool:
        """Ready when a sample succeeded within the last three intervals."""
        if self.last_success_monotonic is None:
            return False
        age = time.monotonic() - self.last_success_monotonic
        return age <= 3 * self.settings.sample_interval_s + self.settings.request_timeout_s

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=16)
        self._listeners.add(queue)
        return queue

    def close_listeners(self) -> None:
        """Tell every live stream to end (on shutdown), so the server need not wait for them."""
        for queue in list(self._listeners):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._listeners.discard(queue)

"""The sampling loop: sample, evaluate, publish to metrics, history and live listeners.

The sampler blocks on admin futures, so it runs in a worker thread; everything
else happens on the event loop, which owns the state (no locks needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from services.lagmonitor.chart_history import History, history_point, point_to_json
from services.lagmonitor.core import (
    ClusterSample,
    EvalConfig,
    MonitorState,
    Snapshot,
    evaluate,
    snapshot_to_json,
)
from services.lagmonitor.exposition import MonitorMetrics
from services.lagmonitor.history_store import HistoryStore
from services.lagmonitor.sampler import KafkaUnreachableError, Sampler
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


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


class LagMonitor:
    """Keeps the latest snapshot, its history, and the queues of live listeners.

    It also knows whether Kafka answered the last sample: after a failed one
    the last good snapshot stays on the page and in ``/api/lag`` (marked as not
    current, with the reason), while ``/metrics`` drops the lag series and says
    ``lagmonitor_kafka_up 0``, and ``/readyz`` fails.
    """

    def __init__(
        self,
        settings: LagMonitorSettings,
        sampler: Sampler | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._sampler = sampler
        self.clock = clock
        self.config = eval_config(settings)
        self.state = MonitorState()
        self.latest: Snapshot | None = None
        self.kafka_up = False
        self.last_success_monotonic: float | None = None
        self.last_success_at: float | None = None
        self.last_attempt_at: float | None = None
        self.unreachable_since: float | None = None
        self.last_error: str | None = None
        self.history = History(settings.history_s)
        self.history_store: HistoryStore | None = None
        self.throughput_state: ThroughputState = {}
        self.services: tuple[ServiceRates, ...] = ()
        self.metrics = MonitorMetrics(
            lambda: self.latest if self.kafka_up else None,
            lambda: self.services,
            cluster=settings.cluster,
            last_good=lambda: self.latest,
            clock=clock,
        )
        self._listeners: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._http: aiohttp.ClientSession | None = None

    @property
    def sampler(self) -> Sampler:
        """Built on first use: a monitor fed samples by hand never opens a Kafka client."""
        if self._sampler is None:
            self._sampler = Sampler(self.settings)
        return self._sampler

    def kafka_json(self) -> dict[str, Any]:
        """Whether Kafka answered the last sample, and since when it has not."""
        return {
            "reachable": self.kafka_up,
            "error": None if self.kafka_up else self.last_error,
            "bootstrap_servers": self.settings.kafka.bootstrap_servers,
            "last_success_at": self.last_success_at,
            "last_attempt_at": self.last_attempt_at,
            "unreachable_since": self.unreachable_since,
        }

    def document(self) -> dict[str, Any] | None:
        """The ``/api/lag`` document: the latest snapshot, service throughput, Kafka's state.

        ``current`` is false while the last sample failed: the figures are then
        the last good ones, not the cluster as it is.
        """
        if self.latest is None:
            return None
        return {
            **snapshot_to_json(self.latest),
            "services": services_to_json(self.services),
            "current": self.kafka_up,
            "kafka": self.kafka_json(),
        }

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
        self.last_success_at = self.last_attempt_at = self.clock()
        self.kafka_up = True
        self.unreachable_since = None
        self.last_error = None
        self.metrics.kafka_up.set(1)
        self.metrics.last_success.set(self.last_success_at)
        self.metrics.last_sample.set(self.last_attempt_at)
        point = history_point(snapshot, self.services)
        self.history.append(point)
        errors = len(sample.errors) + len(sample.partition_errors)
        errors += sum(1 for g in sample.groups if g.error)
        if errors:
            self.metrics.partial_errors.inc(errors)
        self._publish({"snapshot": self.document(), "point": point_to_json(point)})
        return snapshot

    def fail(self, error: str) -> None:
        """A sample that failed as a whole: Kafka is down for us until one succeeds."""
        now = self.clock()
        self.metrics.poll_errors.inc()
        self.kafka_up = False
        self.last_error = error
        self.last_attempt_at = now
        if self.unreachable_since is None:
            self.unreachable_since = now
        self.metrics.kafka_up.set(0)
        self.metrics.last_sample.set(now)
        self._publish({"snapshot": self.document(), "point": None, "kafka": self.kafka_json()})

    def _publish(self, message: dict[str, Any]) -> None:
        for queue in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(message)

    async def scrape_services(self) -> dict[str, Reading]:
        """One reading per configured service (none configured: nothing to do)."""
        if not self.settings.services:
            return {}
        if self._http is None:
            self._http = aiohttp.ClientSession()
        timeout = self.settings.service_timeout_s
        return await scrape_all(self._http, self.settings.services, timeout)

    async def restore_history(self) -> None:
        """Open the PostgreSQL history (``history_db``) and put its recent points on the charts."""
        if not self.settings.history_db or self.history_store is not None:
            return
        database = self.settings.database
        self.history_store = HistoryStore(
            database.database_url.get_secret_value(),
            self.settings.db_schema,
            self.settings.cluster,
            self.settings.history_s,
            connect_timeout_s=database.connect_timeout_s,
        )
        points = await self.history_store.load(self.clock())
        self.history.extend(points)
        if points:
            log.info("history: %d points restored from PostgreSQL", len(points))

    def history_json(self) -> dict[str, Any]:
        """The ``/api/history`` document: the points, and where they are kept."""
        store = self.history_store
        return {
            "points": self.history.to_json(),
            "kept_in": "memory" if store is None or store.error else "postgresql",
            "error": None if store is None else store.error,
        }

    async def close(self) -> None:
        """Release the HTTP client used for the services' /metrics and the database."""
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self.history_store is not None:
            await self.history_store.close()

    async def poll_once(self) -> Snapshot | None:
        """One sample; a failed sample counts as an error and leaves the last snapshot.

        The services are scraped while Kafka is being sampled, so a sample with
        services costs no more time than the slower of the two.
        """
        started = time.monotonic()
        scraping = asyncio.create_task(self.scrape_services())
        try:
            sample = await asyncio.to_thread(self.sampler.sample)
        except KafkaUnreachableError as exc:
            self.fail(f"Kafka unreachable: {exc}")
            log.warning("sample failed: %s", self.last_error)
            sample = None
        except Exception as exc:  # the loop must outlive any one bad sample
            self.fail(f"Kafka unreachable: {type(exc).__name__}: {exc}")
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
        if sample is None:
            return None
        snapshot = self.apply(sample)
        point = self.history.latest()
        if self.history_store is not None and point is not None:
            await self.history_store.save(point)
        return snapshot

    async def run(self) -> None:
        """Sample every ``sample_interval_s`` until cancelled; intervals do not drift."""
        await self.restore_history()
        interval = self.settings.sample_interval_s
        next_at = time.monotonic()
        while True:
            try:
                await self.poll_once()
            except Exception:  # a bug in one sample's evaluation must not end sampling
                log.exception("sample could not be evaluated")
                self.metrics.poll_errors.inc()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # a slow sample: skip the missed ticks instead of bursting
                next_at = time.monotonic()
                delay = 0
            await asyncio.sleep(delay)

    def not_ready(self) -> str | None:
        """Why ``/readyz`` fails, or ``None``: the last sample must have succeeded, recently.

        "Recently" (three intervals plus the request timeout) catches a sampling
        loop that hangs or died; a failed sample fails readiness at once.
        """
        if not self.kafka_up:
            if self.last_attempt_at is None:
                return "no sample yet"
            since = (
                "no successful sample since the monitor started"
                if self.last_success_at is None
                else f"last successful sample {_ago(self.clock() - self.last_success_at)}"
            )
            return f"{self.last_error or 'sample failed'} ({since})"
        assert self.last_success_monotonic is not None
        age = time.monotonic() - self.last_success_monotonic
        if age > 3 * self.settings.sample_interval_s + self.settings.request_timeout_s:
            return f"last successful sample {_ago(age)}: sampling is stuck"
        return None

    def ready(self) -> bool:
        return self.not_ready() is None

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

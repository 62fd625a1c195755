"""One collection run of one group: lock, record, read, build, publish, record.

This is the edge where the pure parts meet the world; its only decisions are
which status a failure earns (``aborted`` for what the API refused, ``failed``
for everything else) and that a failure publishes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime

from prometheus_client import REGISTRY, CollectorRegistry

from services.collector.api import (
    CollectedItem,
    CountersSnapshot,
    OkClient,
    OkClientSettings,
    RunAbortedError,
    SlidingWindowLimiter,
    VkClient,
    VkClientSettings,
)
from services.collector.chunks import (
    Collected,
    MessageTooLargeError,
    RunBuildError,
    RunMeta,
    build_chunks,
)
from services.collector.groups import GroupConfig, MissingCredentialError
from services.collector.guard import check_member_drop
from services.collector.publish import SnapshotPublisher
from services.collector.run_metrics import CollectorMetrics
from services.collector.settings import CollectorSettings
from services.collector.store import (
    GroupBusyError,
    RunStart,
    RunStats,
    RunStatus,
    RunStore,
    group_lock,
    now_millis,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What a run did, for the CLI and the logs."""

    run_id: str
    group: str
    status: RunStatus
    reason: str | None
    members: int | None
    posts: int
    skipped: int
    messages: int
    api_requests: int
    objects_read: int
    duration_s: float
    baseline: bool
    errors_by_code: Mapping[int, int] = dataclasses.field(default_factory=dict)


class Collector:
    """Runs groups; owns the snapshot publisher and one rate limiter per token."""

    def __init__(
        self,
        settings: CollectorSettings,
        publisher: SnapshotPublisher,
        environ: Mapping[str, str] | None = None,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.metrics = CollectorMetrics.on(registry)
        self.environ = environ if environ is not None else os.environ
        self._limiters: dict[tuple[str, str, str], SlidingWindowLimiter] = {}

    def _limiter(
        self, group: GroupConfig, client: VkClientSettings | OkClientSettings
    ) -> SlidingWindowLimiter:
        """One limiter per token and API, shared by every group that uses that token."""
        if isinstance(client, VkClientSettings):
            rate, margin, secret = client.rate, client.rate_margin_s, client.access_token
        else:
            rate, margin, secret = (
                client.requests_per_second,
                client.rate_margin_s,
                client.access_token,
            )
        key = (group.network, client.base_url, str(hash(secret.get_secret_value())))
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = SlidingWindowLimiter(rate, margin_s=margin)
        return limiter

    async def _read(
        self, group: GroupConfig, client: VkClient | OkClient, expected_members: int | None
    ) -> list[CollectedItem]:
        window = group.window.to_window()
        if isinstance(client, VkClient):
            stream = client.collect_group(group.group_id, window, expected_members=expected_members)
        else:
            stream = client.collect_group(group.group_id, window)
        return [item async for item in stream]

    async def run_group(self, group: GroupConfig) -> RunSummary:
        """One run now. ``GroupBusyError`` if the group is being collected elsewhere."""
        began = time.monotonic()
        try:
            async with group_lock(
                self.settings.database, self.settings.db_schema, group.network, group.group_id
            ) as conn:
                store = RunStore(conn, self.settings.db_schema)
                start = await store.start(group.network, group.group_id, group.bucket_count)
                if start.rebaselined:
                    log.warning(
                        "%s: bucket_count changed to %d; this run is a new baseline (no events)",
                        group.name,
                        group.bucket_count,
                    )
                return await self._run(group, store, start.run_id, start, began)
        except GroupBusyError:
            self.metrics.runs.labels(group.network, "busy").inc()
            raise

    async def _run(
        self, group: GroupConfig, store: RunStore, run_id: str, start: RunStart, began: float
    ) -> RunSummary:
        status: RunStatus = "failed"
        reason: str | None = None
        sent = 0
        client: VkClient | OkClient | None = None
        collected = Collected(group.network, group.group_id)
        baseline_post_id = start.baseline_post_id
        stamps: tuple[datetime, datetime] | None = None
        try:
            client_settings = group.client_settings(self.environ)
            limiter = self._limiter(group, client_settings)
            if isinstance(client_settings, VkClientSettings):
                client = VkClient(client_settings, limiter=limiter)
            else:
                client = OkClient(client_settings, limiter=limiter)
            async with client:
                items = await self._read(group, client, start.expected_members)
            # The snapshot's time is when its reads were done, not when the run began:
            # a change the run saw happened before it. The rules count activity at or
            # after a link by this time; stamped with the start, a join read a few
            # seconds into a run was dated before a link made meanwhile, and earned
            # nothing (the demo's "carol has 50, expected 70").
            snapshot_at = now_millis()
            baseline_at = snapshot_at if start.baseline else start.baseline_at
            stamps = (snapshot_at, baseline_at)
            # The baseline run's highest post id is what later runs tell new posts by.
            baseline_post_id = client.newest_post_id if start.baseline else start.baseline_post_id
            collected = Collected.gather(group.network, group.group_id, items)
            check_member_drop(
                group.name,
                start.expected_members,
                None if collected.members is None else len(collected.members),
                max_drop=self.settings.max_member_drop,
                allow_mass_leave=group.allow_mass_leave,
            )
            chunks = build_chunks(
                collected,
                RunMeta(
                    run_id,
                    snapshot_at,
                    baseline_at,
                    group.bucket_count,
                    baseline_post_id,
                ),
            )
            sent = await asyncio.to_thread(
                self.publisher.publish, group.network, group.group_id, chunks
            )
            status = "succeeded"
        except (RunAbortedError, RunBuildError) as exc:
            status = "failed" if isinstance(exc, MessageTooLargeError) else "aborted"
            reason = str(exc)
        except MissingCredentialError as exc:
            reason = str(exc)
        except asyncio.CancelledError:
            reason = "interrupted by shutdown before the run was published"
            await self._finish(
                store,
                group=group,
                run_id=run_id,
                status="failed",
                reason=reason,
                client=client,
                collected=collected,
                sent=0,
                began=began,
                baseline_post_id=baseline_post_id,
                stamps=stamps,
            )
            raise
        except Exception as exc:
            log.exception("%s: run %s failed", group.name, run_id)
            reason = f"{type(exc).__name__}: {exc}"
        summary = await self._finish(
            store,
            group=group,
            run_id=run_id,
            status=status,
            reason=reason,
            client=client,
            collected=collected,
            sent=sent,
            began=began,
            baseline_post_id=baseline_post_id,
            stamps=stamps if status == "succeeded" else None,
        )
        log.info(
            "%s: run %s %s (%d messages, %.1fs)%s",
            group.name,
            run_id,
            status,
            sent,
            summary.duration_s,
            f": {reason}" if reason else "",
        )
        return dataclasses.replace(summary, baseline=start.baseline)

    async def _finish(
        self,
        store: RunStore,
        *,
        group: GroupConfig,
        run_id: str,
        status: RunStatus,
        reason: str | None,
        client: VkClient | OkClient | None,
        collected: Collected,
        sent: int,
        began: float,
        baseline_post_id: int | None,
        stamps: tuple[datetime, datetime] | None,
    ) -> RunSummary:
        counters: CountersSnapshot | None = client.counters if client is not None else None
        skips = client.skips if client is not None else ()
        stats = RunStats(
            api_requests=counters.total_requests if counters else 0,
            api_calls=sum(counters.calls.values()) if counters else 0,
            objects_read=collected.objects_read,
            members=None if collected.members is None else len(collected.members),
            errors_by_code=dict(counters.errors) if counters else {},
            skipped=[
                {"object": s.object, "code": s.code, "message": s.message, "method": s.method}
                for s in skips
            ],
            messages_published=sent,
            baseline_post_id=baseline_post_id,
            snapshot_at=None if stamps is None else stamps[0],
            baseline_at=None if stamps is None else stamps[1],
        )
        await asyncio.shield(store.finish(run_id, status, stats, reason))
        duration = time.monotonic() - began
        if counters is not None:
            self.metrics.record_api(group.network, counters)
        self.metrics.record_run(group.network, status, duration, stats.objects_read, sent)
        return RunSummary(
            run_id=run_id,
            group=group.name,
            status=status,
            reason=reason,
            members=stats.members,
            posts=len(collected.posts),
            skipped=len(skips),
            messages=sent,
            api_requests=stats.api_requests,
            objects_read=stats.objects_read,
            duration_s=duration,
            baseline=False,
            errors_by_code=stats.errors_by_code or {},
        )

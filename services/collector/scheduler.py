"""Runs every group at its interval, with jitter, until told to stop.

One asyncio task per group, so a group never overlaps itself in this process;
the PostgreSQL advisory lock (``store.group_lock``) keeps other processes out.
A failed run is logged and recorded; the group's next run and every other group
go on. Intervals are start to start; a run that overruns its interval is
followed by the next one at once (never by two).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from services.collector.groups import GroupConfig
from services.collector.store import GroupBusyError

log = logging.getLogger(__name__)

RunGroup = Callable[[GroupConfig], Awaitable[object]]


def next_delay(interval_s: float, jitter_s: float, elapsed_s: float, rng: random.Random) -> float:
    """Seconds to wait after a run that took ``elapsed_s`` before the next one starts."""
    return max(0.0, interval_s + rng.uniform(0.0, jitter_s) - elapsed_s)


class Scheduler:
    def __init__(
        self,
        run_group: RunGroup,
        groups: Sequence[GroupConfig],
        *,
        max_concurrent: int = 4,
        rng: random.Random | None = None,
    ) -> None:
        self._run_group = run_group
        self._groups = tuple(groups)
        self._slots = asyncio.Semaphore(max_concurrent)
        self._rng = rng or random.Random()
        self.runs_started = 0

    async def run(self, stop: asyncio.Event, grace_s: float = 30.0) -> None:
        """Until ``stop`` is set; then let running runs finish for up to ``grace_s``."""
        loops = [
            asyncio.create_task(self._loop(group, stop), name=f"collect {group.name}")
            for group in self._groups
        ]
        await stop.wait()
        _done, pending = await asyncio.wait(loops, timeout=grace_s)
        for task in pending:
            log.warning("%s: still running after %.0fs; cancelling it", task.get_name(), grace_s)
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sleep(self, seconds: float, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)

    async def _loop(self, group: GroupConfig, stop: asyncio.Event) -> None:
        # Spread the first runs so a restart does not send every group at once.
        await self._sleep(self._rng.uniform(0.0, group.jitter_s), stop)
        while not stop.is_set():
            began = time.monotonic()
            async with self._slots:
                if stop.is_set():
                    return
                self.runs_started += 1
                try:
                    await self._run_group(group)
                except GroupBusyError as exc:
                    log.info("%s: skipped this tick: %s", group.name, exc)
                except Exception:
                    log.exception("%s: run crashed; the next one is scheduled", group.name)
            elapsed = time.monotonic() - began
            await self._sleep(
                next_delay(group.interval_s, group.jitter_s, elapsed, self._rng), stop
            )

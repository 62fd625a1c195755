"""The HTTP edge of service throughput: GET every service's ``/metrics`` at once.

A service that does not answer within the timeout, answers with an error
status or serves something that is not Prometheus text is *down* for that
sample; the reason travels with the reading to the page and the JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import aiohttp

from services.lagmonitor.throughput import Reading, ServiceTarget, parse_counters


async def scrape_one(
    session: aiohttp.ClientSession,
    target: ServiceTarget,
    timeout_s: float,
    clock: Callable[[], float] = time.time,
) -> Reading:
    try:
        async with session.get(
            target.metrics_url, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as response:
            if response.status != 200:
                return Reading(time=clock(), error=f"HTTP {response.status}")
            text = await response.text()
        at = clock()
        return Reading(time=at, counters=parse_counters(text))
    except TimeoutError:
        return Reading(time=clock(), error=f"no answer within {timeout_s:g} s")
    except aiohttp.ClientError as exc:
        return Reading(time=clock(), error=f"{type(exc).__name__}: {exc}")
    except ValueError as exc:
        return Reading(time=clock(), error=f"not Prometheus text: {exc}")


async def scrape_all(
    session: aiohttp.ClientSession,
    targets: Sequence[ServiceTarget],
    timeout_s: float,
    clock: Callable[[], float] = time.time,
) -> dict[str, Reading]:
    """One reading per service, scraped concurrently so one slow service delays no other."""
    readings = await asyncio.gather(*(scrape_one(session, t, timeout_s, clock) for t in targets))
    return {t.name: r for t, r in zip(targets, readings, strict=True)}

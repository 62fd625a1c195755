"""A per-token request limiter with an injectable clock.

VK says "at most 3 requests per second" (20 with a group token) and counts them
on its side in any one-second span. A token bucket with a burst of N lets
through up to 2N requests in one such span (a full bucket plus a refill), which
earns error 6. So this is a sliding-window log: a request may go when the N-th
request before it is at least ``period`` old. ``margin_s`` widens the window a
little, because the server clocks arrival, not departure, and network jitter
can squeeze two requests closer together than they were sent.

The limiter is shared by every client that uses the same token: build one per
token and pass it in.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class SlidingWindowLimiter:
    """At most ``rate`` acquisitions in any window of ``period_s + margin_s`` seconds."""

    def __init__(
        self,
        rate: int,
        period_s: float = 1.0,
        *,
        margin_s: float = 0.05,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1 request per period")
        if period_s <= 0 or margin_s < 0:
            raise ValueError("period must be positive and margin non-negative")
        self.rate = rate
        self.window_s = period_s + margin_s
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = asyncio.Lock()
        self.waits = 0
        """How many acquisitions had to wait."""
        self.waited_s = 0.0
        """Total seconds spent waiting."""

    def delay(self, now: float) -> float:
        """Seconds until one more request may go at ``now`` (0 when it may go at once)."""
        while self._sent and now - self._sent[0] >= self.window_s:
            self._sent.popleft()
        if len(self._sent) < self.rate:
            return 0.0
        return self._sent[0] + self.window_s - now

    async def acquire(self) -> float:
        """Wait for a slot and take it; returns the seconds waited."""
        async with self._lock:
            waited = 0.0
            while True:
                now = self._clock()
                pause = self.delay(now)
                if pause <= 0:
                    self._sent.append(now)
                    break
                waited += pause
                await self._sleep(pause)
            if waited > 0:
                self.waits += 1
                self.waited_s += waited
            return waited

"""A per-token request limiter that clocks a request when it leaves, not when it asks.

VK says "at most 3 requests per second" (20 with a group token) and counts them
on its side in any one-second span, by when they arrive. Two things follow:

* A token bucket with a burst of N lets through up to 2N requests in one such
  span (a full bucket plus a refill), which earns error 6. So this is a
  sliding-window log: a request may go when the N-th request before it is at
  least ``period_s + margin_s`` old.
* The time that counts is when a request reaches the server. Stamping it when
  the limiter grants the slot is wrong whenever sending takes a while: a cold
  process's first request also opens the connection (and loads what the process
  has not loaded yet), so it arrives late, and the fourth request, granted one
  window after the first was *granted*, arrives less than a second after the
  first *arrived*. So ``acquire`` hands out a :class:`Slot` and the transport
  calls :meth:`Slot.sent` when the request's last byte has been written; a slot
  whose request never reported that is stamped when it is released (its
  response came back or it failed), the latest moment the server can have
  counted it. While a granted request has not left yet, it holds its place in
  the window with no expiry, so nobody can be granted against it too early.

``margin_s`` then only has to cover jitter in how long requests take to reach the
server (two requests squeezed closer together in transit than they were sent),
not connection set-up. With the default 50 ms the steady rate is 3/1.05, 95% of
VK's limit.

Why not a library: ``aiolimiter`` is a leaky bucket (a full bucket lets N go at
once and the next one 1/N s later, so N+1 land inside one second) and ``limits``'
moving window takes its timestamp when ``hit`` is called; neither can grant a
slot now and clock it later, which is the whole fix.

The limiter is shared by every client that uses the same token: build one per
token and pass it in.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class Slot:
    """One granted request's place in the window; stamped when the request leaves."""

    __slots__ = ("_limiter", "stamp", "waited_s")

    def __init__(self, limiter: SlidingWindowLimiter, waited_s: float) -> None:
        self._limiter = limiter
        self.stamp: float | None = None
        """When the request left (``None`` while it has not)."""
        self.waited_s = waited_s
        """Seconds the request waited for this slot."""

    def sent(self) -> None:
        """The request has been written to the connection: the window counts from now.

        Called again (a request re-sent on a fresh connection), the later time wins.
        """
        self.stamp = self._limiter.clock()
        self._limiter.slot_left()

    def release(self) -> None:
        """The request is over; if it never reported leaving, count it from now."""
        if self.stamp is None:
            self.sent()


class SlidingWindowLimiter:
    """At most ``rate`` requests sent in any window of ``period_s + margin_s`` seconds."""

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
        self.clock = clock
        self._sleep = sleep
        self._slots: list[Slot] = []
        self._lock = asyncio.Lock()
        self._left = asyncio.Event()
        self.waits = 0
        """How many acquisitions had to wait."""
        self.waited_s = 0.0
        """Total seconds spent waiting."""

    def delay(self, now: float) -> float | None:
        """Seconds until one more request may go at ``now``: 0 when it may go at once,
        ``None`` when the window is full of requests that have not left yet."""
        self._slots = [
            slot for slot in self._slots if slot.stamp is None or now - slot.stamp < self.window_s
        ]
        free = self.rate - sum(1 for slot in self._slots if slot.stamp is None)
        if free <= 0:
            return None
        stamps = sorted(
            (slot.stamp for slot in self._slots if slot.stamp is not None), reverse=True
        )
        if len(stamps) < free:
            return 0.0
        # The free-th newest stamped request must age out of the window first.
        return max(0.0, stamps[free - 1] + self.window_s - now)

    def slot_left(self) -> None:
        """Wake an acquirer waiting for a granted request to leave."""
        self._left.set()

    async def acquire(self) -> Slot:
        """Wait for a place in the window and take it; call ``sent``/``release`` on the slot."""
        async with self._lock:
            waited = 0.0
            while True:
                now = self.clock()
                pause = self.delay(now)
                if pause == 0:
                    break
                if pause is None:
                    self._left.clear()
                    await self._left.wait()
                    waited += self.clock() - now
                    continue
                waited += pause
                await self._sleep(pause)
            slot = Slot(self, waited)
            self._slots.append(slot)
            if waited > 0:
                self.waits += 1
                self.waited_s += waited
            return slot

"""Retries with exponential backoff: one policy object for every caller, on tenacity.

``Backoff`` says how many attempts and how the waits grow; ``retrying`` and
``async_retrying`` build tenacity's retry loops from it, with the caller's test
for what is worth retrying and its own logging and counting before each wait.
The collector's API transport (jittered, so many collectors hitting one limit do
not come back in lock-step) and the actions service's message sends (a fixed
schedule, so the worst case is known in advance) both use it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.wait import wait_base

__all__ = ["Backoff", "RetryCallState"]


@dataclass(frozen=True)
class Backoff:
    """``attempts`` tries in all; before retry number n (1-based) wait
    ``min(cap_s, base_s * 2**(n-1))``, or with ``jitter`` a uniform draw in
    ``[0, that]`` ("full jitter")."""

    attempts: int
    base_s: float
    cap_s: float
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("backoff times must be >= 0")

    @property
    def wait(self) -> wait_base:
        if self.jitter:
            return wait_random_exponential(multiplier=self.base_s, max=self.cap_s)
        return wait_exponential(multiplier=self.base_s, max=self.cap_s)

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1-based), outside a retry loop."""
        if retry < 1:
            raise ValueError("retry is 1-based")
        state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = retry
        return float(self.wait(state))

    def delays(self) -> list[float]:
        """Every wait of a full run of attempts: ``attempts - 1`` of them."""
        return [self.delay(n) for n in range(1, self.attempts)]

    def retrying(
        self,
        worth_retrying: Callable[[BaseException], bool],
        before_sleep: Callable[[RetryCallState], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Retrying:
        """A loop that retries what ``worth_retrying`` accepts and re-raises the last
        error when the attempts run out (or at once for anything else)."""
        return Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self.wait,
            retry=retry_if_exception(worth_retrying),
            before_sleep=before_sleep,
            sleep=sleep,
            reraise=True,
        )

    def async_retrying(
        self,
        worth_retrying: Callable[[BaseException], bool],
        before_sleep: Callable[[RetryCallState], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> AsyncRetrying:
        """``retrying`` for coroutines; ``sleep`` defaults to ``asyncio.sleep``."""
        return AsyncRetrying(
            sleep=sleep or asyncio.sleep,
            stop=stop_after_attempt(self.attempts),
            wait=self.wait,
            retry=retry_if_exception(worth_retrying),
            before_sleep=before_sleep,
            reraise=True,
        )

"""The one place a request goes out: rate limit, send, classify, retry.

Both clients send through here, so "error 6 is retried", "14 stops the run" and
"15 skips the object" behave the same everywhere and are counted the same way.
The token travels in the POST body, never in the URL, so no HTTP log line can
carry it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Self

import httpx

from services.collector.api.call_counters import ApiCounters, CountersSnapshot
from services.collector.api.config import RetrySettings
from services.collector.api.errors import (
    Action,
    Network,
    ObjectSkippedError,
    RetriesExhaustedError,
    RunAbortedError,
    abort_message,
    classify,
)
from services.collector.api.ratelimit import SlidingWindowLimiter, Slot
from services.collector.api.records import Skip
from services.runtime.retry import Backoff, RetryCallState

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
ErrorParser = Callable[[Any], "tuple[int, str] | None"]
"""Finds an API error in a decoded body: ``(code, message)`` or ``None``."""


class Transport:
    """Sends one API request with the limiter, the retry policy and the counters."""

    def __init__(
        self,
        network: Network,
        *,
        url: Callable[[str], str],
        http: httpx.AsyncClient,
        limiter: SlidingWindowLimiter,
        retry: RetrySettings,
        parse_error: ErrorParser,
        counters: ApiCounters,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.network = network
        self._url = url
        self._http = http
        self._limiter = limiter
        self._backoff = Backoff(retry.max_attempts, retry.backoff_base_s, retry.backoff_cap_s)
        self._parse_error = parse_error
        self.counters = counters
        self._sleep = sleep

    async def request(self, method: str, form: Mapping[str, str], obj: str) -> Any:
        """The decoded body of a successful call to ``method``.

        Raises ``ObjectSkippedError`` for errors that concern ``obj`` alone, ``RunAbortedError``
        for errors that make the run pointless, ``RetriesExhaustedError`` when a
        transient error outlives the retry budget.
        """

        def before_retry(state: RetryCallState) -> None:
            self.counters.retries += 1
            log.info(
                "%s %s for %s: %s; retry %d/%d in %.2fs",
                self.network,
                method,
                obj,
                state.outcome.exception() if state.outcome else "?",
                state.attempt_number,
                self._backoff.attempts - 1,
                state.upcoming_sleep,
            )

        retrying = self._backoff.async_retrying(
            lambda exc: isinstance(exc, _TransientError), before_retry, self._sleep
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(method, form, obj)
        except _TransientError as exc:
            raise RetriesExhaustedError(
                f"{self.network.upper()} {method} for {obj}: {exc} "
                f"(gave up after {self._backoff.attempts} attempts)",
                method=method,
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, form: Mapping[str, str], obj: str) -> Any:
        """One request under the rate limit: its body, or ``_TransientError``."""
        slot = await self._limiter.acquire()
        if slot.waited_s > 0:
            self.counters.rate_limit_waits += 1
            self.counters.rate_limit_wait_s += slot.waited_s
        self.counters.requests[method] += 1
        try:
            problem = await self._attempt(method, form, obj, slot)
        finally:
            slot.release()
        if isinstance(problem, _Success):
            return problem.body
        raise _TransientError(problem)

    async def pause(self, method: str, problems: Sequence[tuple[str, str]]) -> None:
        """Back off before re-sending calls that failed transiently inside ``method``
        (``execute``), as if they had failed alone: the limit they hit is still there.

        ``problems`` are ``(call, what went wrong)``; each is logged and counted like
        a retry of a request of its own.
        """
        self.counters.retries += len(problems)
        delay = self._backoff.delay(1)
        for call, problem in problems:
            log.info(
                "%s %s inside %s: %s; retry alone in %.2fs",
                self.network,
                call,
                method,
                problem,
                delay,
            )
        await self._sleep(delay)

    async def _attempt(
        self, method: str, form: Mapping[str, str], obj: str, slot: Slot
    ) -> _Success | str:
        """One try: the body, or a description of a transient problem worth retrying."""

        async def trace(event: str, _info: Mapping[str, Any]) -> None:
            # The request's last byte is out: from here on the server may count it.
            if event.endswith("send_request_body.complete"):
                slot.sent()

        try:
            response = await self._http.post(
                self._url(method), data=dict(form), extensions={"trace": trace}
            )
        except httpx.TransportError as exc:
            self.counters.transport_errors += 1
            return f"network error ({type(exc).__name__})"
        if response.status_code >= 500 or response.status_code == 429:
            self.counters.transport_errors += 1
            return f"HTTP {response.status_code}"
        if response.status_code != 200:
            raise RunAbortedError(
                f"{self.network.upper()} {method}: unexpected HTTP {response.status_code}",
                method=method,
            )
        try:
            body = response.json()
        except ValueError:
            self.counters.transport_errors += 1
            return "unreadable response body"
        error = self._parse_error(body)
        if error is None:
            return _Success(body)
        code, message = error
        self.counters.errors[code] += 1
        action = classify(self.network, code)
        if action is Action.SKIP:
            raise ObjectSkippedError(Skip(object=obj, code=code, message=message, method=method))
        if action is Action.ABORT:
            raise RunAbortedError(
                abort_message(self.network, code, message, method), code=code, method=method
            )
        return f"error {code} ({message})"


class _TransientError(Exception):
    """One try failed in a way worth retrying; the message says how."""


class _Success:
    __slots__ = ("body",)

    def __init__(self, body: Any) -> None:
        self.body = body


class ApiClient:
    """What the VK and OK clients share: the HTTP client (closed only if it is theirs),
    one limiter per token, the counters, the transport, the clock and the skips so far.
    ``path`` maps an API method to its URL below ``base_url``."""

    def __init__(
        self,
        network: Network,
        *,
        base_url: str,
        path: Callable[[str], str],
        rate: int,
        rate_margin_s: float,
        timeout_s: float,
        retry: RetrySettings,
        parse_error: ErrorParser,
        http: httpx.AsyncClient | None,
        limiter: SlidingWindowLimiter | None,
        sleep: Sleep,
        clock: Callable[[], float],
    ) -> None:
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_s)
        self.limiter = limiter or SlidingWindowLimiter(rate, margin_s=rate_margin_s)
        self._counters = ApiCounters()
        base = base_url if base_url.endswith("/") else base_url + "/"
        self._transport = Transport(
            network,
            url=lambda method: base + path(method),
            http=self._http,
            limiter=self.limiter,
            retry=retry,
            parse_error=parse_error,
            counters=self._counters,
            sleep=sleep,
        )
        self._base_url = base_url
        self._clock = clock
        self._skips: list[Skip] = []
        self.newest_post_id: int | None = None
        """The highest post id the wall (VK) or topic list (OK) showed in this client's
        last ``recent_posts``, window or not; 0 for an empty wall, ``None`` before a read.
        Post ids grow per wall as posts are published: a baseline's highest id tells
        later posts from earlier ones without trusting any clock."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    @property
    def counters(self) -> CountersSnapshot:
        return self._counters.snapshot()

    @property
    def skips(self) -> tuple[Skip, ...]:
        """Every object skipped by ``collect_group`` so far, in order."""
        return tuple(self._skips)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base_url!r}, token=**********)"

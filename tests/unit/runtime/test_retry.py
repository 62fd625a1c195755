"""The one backoff policy (services.runtime.retry) both retrying callers use."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.retry import Backoff, RetryCallState


@given(retry=st.integers(1, 30), base=st.floats(0, 5), cap=st.floats(0, 60))
def test_a_jittered_wait_stays_below_the_exponential_ceiling(
    retry: int, base: float, cap: float
) -> None:
    delay = Backoff(31, base, cap).delay(retry)
    assert 0 <= delay <= min(cap, base * 2 ** (retry - 1)) + 1e-9


def test_jitter_spreads_retries_and_a_fixed_schedule_does_not() -> None:
    assert len({round(Backoff(5, 1.0, 30.0).delay(3), 3) for _ in range(50)}) > 40
    assert Backoff(6, 0.5, 5, jitter=False).delays() == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert Backoff(1, 0.5, 5, jitter=False).delays() == []
    with pytest.raises(ValueError, match="attempts"):
        Backoff(0, 1, 1)


def test_retrying_stops_after_the_attempts_and_reraises_the_last_error() -> None:
    calls: list[int] = []
    waits: list[float] = []

    def flaky() -> str:
        calls.append(1)
        raise TimeoutError(f"try {len(calls)}")

    retrying = Backoff(3, 0.5, 5, jitter=False).retrying(
        lambda exc: isinstance(exc, TimeoutError), sleep=waits.append
    )
    with pytest.raises(TimeoutError, match="try 3"):
        retrying(flaky)
    assert (len(calls), waits) == (3, [0.5, 1.0])


def test_an_error_not_worth_retrying_is_raised_at_once() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        Backoff(5, 0, 0).retrying(lambda exc: isinstance(exc, TimeoutError))(broken)
    assert len(calls) == 1


def test_async_retrying_reports_each_wait_before_it_sleeps() -> None:
    seen: list[tuple[int, float]] = []
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    def before(state: RetryCallState) -> None:
        seen.append((state.attempt_number, state.upcoming_sleep))

    async def main() -> int:
        tries = 0
        async for attempt in Backoff(4, 1, 10, jitter=False).async_retrying(
            lambda exc: isinstance(exc, ConnectionError), before, sleep
        ):
            with attempt:
                tries += 1
                if tries < 3:
                    raise ConnectionError
                return tries
        raise AssertionError("unreachable")

    assert asyncio.run(main()) == 3
    assert seen == [(1, 1.0), (2, 2.0)]
    assert slept == [1.0, 2.0]

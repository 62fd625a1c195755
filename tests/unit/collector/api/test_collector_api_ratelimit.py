"""The per-token limiter, driven by a fake clock: no real waiting."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.collector.api.ratelimit import SlidingWindowLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_three_requests_go_at_once_and_the_fourth_waits_for_the_window() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, margin_s=0.05, clock=clock, sleep=clock.sleep)

    async def main() -> list[float]:
        return [await limiter.acquire() for _ in range(4)]

    waited = asyncio.run(main())
    assert waited[:3] == [0.0, 0.0, 0.0]
    assert waited[3] == pytest.approx(1.05)
    assert limiter.waits == 1 and limiter.waited_s == pytest.approx(1.05)


@given(
    rate=st.integers(min_value=1, max_value=20),
    gaps=st.lists(st.floats(min_value=0, max_value=0.7), min_size=1, max_size=60),
)
def test_no_window_ever_holds_more_than_rate_requests(rate: int, gaps: list[float]) -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(rate, margin_s=0.0, clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def main() -> None:
        for gap in gaps:
            clock.now += gap
            await limiter.acquire()
            sent.append(clock.now)

    asyncio.run(main())
    for index in range(rate, len(sent)):
        assert sent[index] - sent[index - rate] >= 1.0 - 1e-9


def test_a_limiter_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        SlidingWindowLimiter(0)
    with pytest.raises(ValueError, match="period"):
        SlidingWindowLimiter(3, period_s=0)

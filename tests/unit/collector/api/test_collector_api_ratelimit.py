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
        waited = []
        for _ in range(4):
            slot = await limiter.acquire()
            slot.sent()
            waited.append(slot.waited_s)
        return waited

    waited = asyncio.run(main())
    assert waited[:3] == [0.0, 0.0, 0.0]
    assert waited[3] == pytest.approx(1.05)
    assert limiter.waits == 1 and limiter.waited_s == pytest.approx(1.05)


def test_the_window_counts_from_when_a_late_first_request_left() -> None:
    """A cold process: the first request opens the connection and leaves 0.3 s after
    its slot was granted. The fourth must wait one window from that send, not from
    the grant, or the server sees four requests inside one second."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, margin_s=0.0, clock=clock, sleep=clock.sleep)

    async def main() -> list[float]:
        sent = []
        first = await limiter.acquire()
        clock.now += 0.3
        first.sent()
        sent.append(clock.now)
        for _ in range(3):
            slot = await limiter.acquire()
            slot.sent()
            sent.append(clock.now)
        return sent

    sent = asyncio.run(main())
    assert sent[3] - sent[0] == pytest.approx(1.0)


def test_a_granted_request_that_has_not_left_holds_its_place() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(2, margin_s=0.0, clock=clock, sleep=clock.sleep)

    async def main() -> float:
        slots = [await limiter.acquire(), await limiter.acquire()]
        third = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        assert not third.done()  # both places are taken by requests still connecting
        clock.now += 2.0  # however long that takes
        await asyncio.sleep(0)
        assert not third.done()
        slots[0].release()  # it failed before reporting a send: counted from now
        return (await third).waited_s

    assert asyncio.run(main()) > 0
    assert clock.now == pytest.approx(103.0)  # one window after the release


@given(
    rate=st.integers(min_value=1, max_value=20),
    requests=st.lists(
        st.tuples(st.floats(min_value=0, max_value=0.7), st.floats(min_value=0, max_value=0.5)),
        min_size=1,
        max_size=60,
    ),
)
def test_no_window_ever_holds_more_than_rate_sends(
    rate: int, requests: list[tuple[float, float]]
) -> None:
    """Whatever the gaps between requests and however long each takes to leave."""
    clock = FakeClock()
    limiter = SlidingWindowLimiter(rate, margin_s=0.0, clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def main() -> None:
        for gap, send_delay in requests:
            clock.now += gap
            slot = await limiter.acquire()
            clock.now += send_delay
            slot.sent()
            sent.append(clock.now)

    asyncio.run(main())
    for index in range(rate, len(sent)):
        assert sent[index] - sent[index - rate] >= 1.0 - 1e-9


def test_a_limiter_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        SlidingWindowLimiter(0)
    with pytest.raises(ValueError, match="period"):
        SlidingWindowLimiter(3, period_s=0)

"""Which replay windows overlap the time an offer was live (replay --apply refuses those)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.rules.offer_store import LivePeriod
from services.rules.replay import live_overlap

T = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
NOW = T + timedelta(days=30)
H = timedelta(hours=1)


def test_a_window_ending_at_the_activation_is_safe() -> None:
    live = [LivePeriod(T, None, 1)]
    assert live_overlap(live, T - 100 * H, T, NOW) is None
    assert live_overlap(live, T - 100 * H, T + H, NOW) == live[0]
    assert live_overlap(live, T - 100 * H, None, NOW) == live[0]  # open end: up to now


def test_only_overlapping_periods_count() -> None:
    earlier = LivePeriod(T - 10 * H, T - 5 * H, 1)
    later = LivePeriod(T + 5 * H, None, 2)
    assert live_overlap([earlier, later], T - 5 * H, T + 5 * H, NOW) is None  # the gap between
    assert live_overlap([earlier, later], T - 6 * H, T, NOW) == earlier
    assert live_overlap([earlier, later], T + 6 * H, T + 7 * H, NOW) == later
    assert live_overlap([], T - 100 * H, None, NOW) is None  # never live

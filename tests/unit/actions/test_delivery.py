from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from services.actions.delivery import may_receive, quiet_until

MSK = ZoneInfo("Europe/Moscow")


def test_quiet_hours_wrap_midnight_in_the_program_zone() -> None:
    # 20:30 UTC is 23:30 in Moscow: quiet until 09:00 Moscow the next morning
    late = datetime(2025, 3, 1, 20, 30, tzinfo=UTC)
    until = quiet_until(late, time(22), time(9), MSK)
    assert until == datetime(2025, 3, 2, 9, 0, tzinfo=MSK)
    # 03:00 Moscow, same night: until 09:00 the same day
    night = datetime(2025, 3, 2, 0, 0, tzinfo=UTC)
    assert quiet_until(night, time(22), time(9), MSK) == datetime(2025, 3, 2, 9, 0, tzinfo=MSK)
    noon = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)
    assert quiet_until(noon, time(22), time(9), MSK) is None
    assert quiet_until(late, None, None, MSK) is None


def test_quiet_window_within_one_day() -> None:
    at = datetime(2025, 3, 2, 11, 0, tzinfo=MSK)
    assert quiet_until(at, time(10), time(12), MSK) == datetime(2025, 3, 2, 12, 0, tzinfo=MSK)


def test_marketing_only_to_subscribed_members() -> None:
    assert may_receive(False, False, True)
    assert not may_receive(True, False, True)
    assert may_receive(True, None, True)
    assert not may_receive(True, None, False)
    assert may_receive(True, True, False)

"""Notification policy, pure: quiet hours, who gets marketing. (The retry schedule is
``services.runtime.retry.Backoff`` without jitter: the bound on how long one message can
hold its partition is then exact, ``sum(backoff.delays())``, and the providers dedupe by
idempotency key anyway, so jitter buys nothing there.)"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def _in_window(clock: time, start: time, end: time) -> bool:
    if start <= end:
        return start <= clock < end
    return clock >= start or clock < end  # the window wraps past midnight


def quiet_until(
    now: datetime, start: time | None, end: time | None, zone: ZoneInfo
) -> datetime | None:
    """When a marketing message written at ``now`` may go out: ``None`` for "now",
    otherwise the end of the quiet window, in the program's time zone (so 22:00-09:00
    means the members' evening, not the server's)."""
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(zone)
    if not _in_window(local.time(), start, end):
        return None
    candidate = datetime.combine(local.date(), end, tzinfo=zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=zone)
    return candidate


def may_receive(marketing: bool, subscribed: bool | None, default_enabled: bool) -> bool:
    """Service messages always go out; marketing only to members subscribed on the
    channel (no row yet: ``default_enabled``)."""
    if not marketing:
        return True
    return default_enabled if subscribed is None else subscribed

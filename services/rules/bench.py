"""``python -m services.rules bench``: how fast the pure path is on this machine.

Prints events/s for ``evaluate_all`` with the acceptance set loaded and for the
worker's per-event path (``process`` plus the member record's JSON), so a
change that slows the engine shows up as a number, not a feeling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.rules.engine import EventType, MemberState, RuleEvent, evaluate_all
from services.rules.offers import load_offer_dir
from services.rules.processing import MemberRecord, process
from services.rules.store import EXAMPLES_DIR


def _events(count: int, members: int) -> list[RuleEvent]:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    return [
        RuleEvent(
            event_id=f"e{i}",
            type=EventType.POST_UNLIKED if i % 5 == 0 else EventType.POST_LIKED,
            network="vk",
            social_user_id=str(i % members),
            member_id=f"M{i % members}",
            occurred_at=start + timedelta(minutes=i),
            group_id="1001",
            post_id=str(i // members),
            linked_at=start,
        )
        for i in range(count)
    ]


def measure(count: int = 20_000, members: int = 1_000) -> tuple[float, float, int]:
    """Likes and unlikes over ``members`` members through all example offers.

    Returns (``evaluate_all`` events/s, worker path events/s, the last member
    record's size in bytes). The worker path is ``process`` plus encoding the
    record it writes to the changelog on every event.
    """
    offers = load_offer_dir(EXAMPLES_DIR)
    tz = ZoneInfo("Europe/Moscow")
    events = _events(count, members)
    issued = datetime(2025, 3, 1, tzinfo=UTC)

    states: dict[str, MemberState] = {}
    started = time.perf_counter()
    for event in events:
        result = evaluate_all(offers, states.get(event.member_id, MemberState()), event, tz=tz)
        states[event.member_id] = result.state
    engine = count / (time.perf_counter() - started)

    records: dict[str, MemberRecord] = {}
    size = 0
    started = time.perf_counter()
    for event in events:
        processed = process(
            offers, records.get(event.member_id, MemberRecord()), event, tz=tz, issued_at=issued
        )
        size = len(processed.record.to_json())  # the worker writes this to the changelog
        records[event.member_id] = processed.record
    worker = count / (time.perf_counter() - started)
    return engine, worker, size


def run(count: int = 20_000, members: int = 1_000, echo: Callable[[str], None] = print) -> None:
    """Print ``measure``'s figures."""
    engine, worker, size = measure(count, members)
    echo(f"evaluate_all, 9 example offers, {members} members: {engine:,.0f} events/s")
    echo(f"worker path (process + record to_json): {worker:,.0f} events/s; record {size:,} B")

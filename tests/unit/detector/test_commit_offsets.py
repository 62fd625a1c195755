"""Which offset the detector's Faust consumer commits: never past the in-order guard's
limit, and the limit itself once idle (docs/detector.md, "Committed offsets")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from faust.types import TP

from services.detector.faust_app import ReadCommittedApp

TP0 = TP("snapshots", 0)


@pytest.fixture
def consumer() -> Iterator[Any]:
    """The worker's consumer, not started: its offset bookkeeping only."""
    app = ReadCommittedApp("t-commit-offsets", broker="kafka://127.0.0.1:1")
    app.commit_limits = {}
    yield app.consumer


def _ack(consumer: Any, *offsets: int) -> None:
    consumer._acked[TP0].extend(offsets)
    consumer._acked_index[TP0].update(offsets)


def test_acked_records_commit_up_to_the_limit_and_no_further(consumer: Any) -> None:
    consumer._committed_offset[TP0] = 10
    _ack(consumer, 10, 11, 12)
    consumer.app.commit_limits[TP0] = 12  # record 12 acked by Faust, not handled
    assert consumer._new_offset(TP0) == 12


def test_idle_a_limit_moved_past_the_markers_is_committed_with_nothing_acked(
    consumer: Any,
) -> None:
    consumer._committed_offset[TP0] = 13  # records up to 12 handled and committed
    assert consumer._new_offset(TP0) is None  # no limit: nothing handled here
    consumer.app.commit_limits[TP0] = 13
    assert consumer._new_offset(TP0) is None  # already committed
    consumer.app.commit_limits[TP0] = 14  # InOrder.step_over: 13 was the commit marker
    assert consumer._new_offset(TP0) == 14


def test_without_limits_nothing_acked_commits_nothing(consumer: Any) -> None:
    consumer.app.commit_limits = None
    consumer._committed_offset[TP0] = 13
    assert consumer._new_offset(TP0) is None
    _ack(consumer, 13)
    assert consumer._new_offset(TP0) == 14

"""Burrow's rules: the status an on-call person gets paged (or not) for."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from services.lagmonitor.burrow import (
    Observation,
    Status,
    Window,
    observe,
    partition_status,
    worst,
)

SIZE = 5
STOP_AFTER = 50.0  # the window's duration: 5 samples of 10 s


def window_of(*points: tuple[int, int], start: float = 0.0, step: float = 10.0) -> Window:
    """Observations (offset, lag) taken every ``step`` seconds."""
    return tuple(Observation(o, lag, start + i * step) for i, (o, lag) in enumerate(points))


def status(window: Window, lag: int | None = None, now: float | None = None) -> Status:
    last = window[-1]
    return partition_status(
        window,
        lag=last.lag if lag is None else lag,
        now=last.time if now is None else now,
        size=SIZE,
        stop_after=STOP_AFTER,
    )


def test_consumer_keeping_up_is_ok() -> None:
    assert status(window_of((10, 0), (20, 0), (30, 0), (40, 0), (50, 0))) is Status.OK


def test_lag_zero_anywhere_in_the_window_is_ok() -> None:
    assert status(window_of((10, 5), (20, 0), (30, 8), (40, 9), (50, 12))) is Status.OK


def test_lag_growing_while_consuming_is_warn() -> None:
    assert status(window_of((10, 5), (20, 7), (30, 7), (40, 9), (50, 12))) is Status.WARN


def test_lag_shrinking_somewhere_is_ok() -> None:
    assert status(window_of((10, 5), (20, 7), (30, 6), (40, 9), (50, 12))) is Status.OK


def test_same_offset_over_the_whole_window_with_lag_is_stall() -> None:
    assert status(window_of((10, 5), (10, 6), (10, 6), (10, 9), (10, 12))) is Status.STALL


def test_offset_going_back_is_rewind() -> None:
    assert status(window_of((10, 5), (20, 5), (3, 30), (8, 26), (12, 24))) is Status.REWIND


def test_rewind_is_reported_even_after_catching_up() -> None:
    assert status(window_of((10, 0), (2, 8), (10, 0), (11, 0), (12, 0))) is Status.REWIND


def test_rewind_is_forgotten_once_older_than_the_window() -> None:
    window = window_of((10, 0), (2, 0))
    assert status(window, lag=0, now=10.0) is Status.REWIND
    assert status(window, lag=0, now=10.0 + STOP_AFTER + 1) is Status.OK


def test_no_commit_for_longer_than_the_window_with_lag_is_stop() -> None:
    window = window_of((10, 5), (20, 5), (30, 5))
    assert status(window, lag=7, now=20.0 + STOP_AFTER + 1) is Status.STOP
    assert status(window, lag=7, now=20.0 + STOP_AFTER - 1) is not Status.STOP


def test_stop_needs_lag() -> None:
    window = window_of((10, 0), (20, 0), (30, 0))
    assert status(window, lag=0, now=1_000.0) is Status.OK


def test_a_partial_window_does_not_stall_or_warn() -> None:
    assert status(window_of((10, 5), (10, 6), (10, 9))) is Status.OK
    assert status(window_of((10, 5), (20, 6), (30, 9))) is Status.OK


def test_an_empty_window_is_ok() -> None:
    assert partition_status((), lag=5, now=1.0, size=SIZE, stop_after=STOP_AFTER) is Status.OK


def test_unowned_partition_without_movement_adds_no_evidence() -> None:
    window = window_of((10, 5))
    assert observe(window, Observation(10, 9, 20.0), SIZE, owned=False) == window
    moved = observe(window, Observation(12, 9, 20.0), SIZE, owned=False)
    assert moved[-1] == Observation(12, 9, 20.0)


def test_owned_partition_is_observed_every_sample_so_a_stuck_member_stalls() -> None:
    window: Window = ()
    for i in range(SIZE):
        window = observe(window, Observation(10, 5 + i, 10.0 * i), SIZE, owned=True)
    assert len(window) == SIZE
    assert status(window) is Status.STALL


def test_a_group_nobody_consumes_for_a_window_stops() -> None:
    window: Window = ()
    for i in range(SIZE + 2):
        window = observe(window, Observation(10, 5 + i, 10.0 * i), SIZE, owned=False)
    assert len(window) == 1
    assert status(window, lag=11, now=10.0 * (SIZE + 1)) is Status.STOP


@given(st.lists(st.tuples(st.integers(0, 100), st.booleans()), max_size=40))
def test_window_never_exceeds_its_size(steps: list[tuple[int, bool]]) -> None:
    window: Window = ()
    for i, (offset, owned) in enumerate(steps):
        window = observe(window, Observation(offset, 1, float(i)), SIZE, owned=owned)
        assert len(window) <= SIZE
        assert not window or window[-1].time <= float(i)


@given(
    st.lists(st.tuples(st.integers(0, 1_000), st.integers(0, 1_000)), min_size=1, max_size=8),
    st.floats(0, 500),
)
def test_current_lag_zero_is_never_an_error_unless_rewound(
    points: list[tuple[int, int]], later: float
) -> None:
    window = window_of(*points)
    offsets = [o for o, _ in points]
    rewound = any(b < a for a, b in itertools.pairwise(offsets))
    result = status(window, lag=0, now=window[-1].time + later)
    assert result in ({Status.OK, Status.REWIND} if rewound else {Status.OK})


def test_worst_orders_by_severity() -> None:
    assert worst([]) is Status.OK
    assert worst([Status.OK, Status.WARN]) is Status.WARN
    assert worst([Status.STALL, Status.REWIND, Status.WARN]) is Status.STALL
    assert worst([Status.STOP, Status.ERR]) is Status.ERR
    assert [s.code for s in Status] == [0, 1, 2, 3, 4, 5]

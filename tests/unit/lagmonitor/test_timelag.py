"""Time lag interpolation: the figures an operator reads as "minutes behind"."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.lagmonitor.timelag import (
    Point,
    Table,
    TimeLagKind,
    add_point,
    time_at_offset,
    time_lag,
)

CAPACITY = 8


def build(samples: list[tuple[int, float]], capacity: int = CAPACITY) -> Table:
    table: Table = ()
    for offset, at in samples:
        table = add_point(table, offset, at, capacity)
    return table


@st.composite
def growing_samples(draw: st.DrawFn, min_size: int = 2) -> list[tuple[int, float]]:
    """End offsets that never shrink, sampled at strictly increasing times."""
    steps = draw(
        st.lists(
            st.tuples(st.integers(0, 1_000), st.floats(0.5, 120.0, allow_nan=False)),
            min_size=min_size,
            max_size=60,
        )
    )
    offset, at, samples = draw(st.integers(0, 10_000)), 1_000_000.0, []
    for grow, pause in steps:
        offset += grow
        at += pause
        samples.append((offset, at))
    return samples


def is_well_formed(table: Table) -> bool:
    return all(b.offset >= a.offset and b.time > a.time for a, b in itertools.pairwise(table))


@given(growing_samples())
def test_table_stays_ordered_bounded_and_keeps_both_ends(samples: list[tuple[int, float]]) -> None:
    table = build(samples)
    assert is_well_formed(table)
    assert len(table) <= CAPACITY
    assert table[-1] == Point(*samples[-1]) or table[-1].offset == samples[-1][0]
    assert table[0].offset == samples[0][0]


@given(growing_samples(), st.data())
def test_interpolated_time_is_monotone_in_offset(
    samples: list[tuple[int, float]], data: st.DataObject
) -> None:
    table = build(samples)
    top = table[-1].offset
    a = data.draw(st.integers(top - 20_000, top))
    b = data.draw(st.integers(a, top))
    ta, tb = time_at_offset(table, a), time_at_offset(table, b)
    assert ta is not None and tb is not None
    assert ta[0] <= tb[0] + 1e-6


@given(growing_samples(), st.data())
def test_time_lag_never_grows_as_the_group_catches_up(
    samples: list[tuple[int, float]], data: st.DataObject
) -> None:
    table = build(samples)
    end, now = table[-1].offset, table[-1].time
    a = data.draw(st.integers(max(0, end - 20_000), end))
    b = data.draw(st.integers(a, end))
    lag_a, lag_b = time_lag(table, a, end, now), time_lag(table, b, end, now)
    assert lag_a.seconds is not None and lag_b.seconds is not None
    assert lag_a.seconds >= lag_b.seconds - 1e-6
    assert lag_b.seconds >= 0


@given(growing_samples(min_size=1), st.integers(0, 5))
def test_no_offset_lag_means_no_time_lag(samples: list[tuple[int, float]], ahead: int) -> None:
    table = build(samples)
    end, now = table[-1].offset, table[-1].time
    assert time_lag(table, end + ahead, end, now).seconds == 0.0
    assert time_lag(table, end, end, now).kind is TimeLagKind.ZERO


@given(st.integers(1, 50), st.integers(3, 40), st.data())
def test_constant_rate_is_interpolated_exactly(
    rate: int, samples: int, data: st.DataObject
) -> None:
    """At a steady 'rate' messages per second, offset o was the end at o / rate seconds."""
    table = build([(rate * i, float(i)) for i in range(samples)], capacity=64)
    end, now = table[-1].offset, table[-1].time
    committed = data.draw(st.integers(1, end - 1))
    lag = time_lag(table, committed, end, now)
    assert lag.kind is TimeLagKind.INTERPOLATED
    assert lag.seconds == pytest.approx(now - committed / rate, abs=1e-6)


@given(growing_samples(), st.integers(1, 10_000))
def test_extrapolation_never_claims_less_than_the_table_proves(
    samples: list[tuple[int, float]], behind: int
) -> None:
    """A committed offset older than the table is at least as old as the oldest point."""
    table = build(samples)
    end, now = table[-1].offset, table[-1].time
    committed = table[0].offset - behind
    lag = time_lag(table, committed, end, now)
    assert lag.seconds is not None
    assert lag.seconds >= now - table[0].time - 1e-6
    assert lag.kind in {TimeLagKind.EXTRAPOLATED, TimeLagKind.LOWER_BOUND}


def test_idle_topic_keeps_one_flat_run_and_its_history() -> None:
    table = build([(0, 0.0), (100, 10.0)] + [(100, 10.0 + i) for i in range(1, 200)])
    assert table == (Point(0, 0.0), Point(100, 10.0), Point(100, 209.0))
    lag = time_lag(table, 50, 100, 209.0)
    assert lag.seconds == pytest.approx(209.0 - 5.0)


def test_idle_topic_gives_a_lower_bound_for_older_offsets() -> None:
    table = build([(100, 0.0), (100, 30.0)])
    lag = time_lag(table, 40, 100, 30.0)
    assert lag == lag.__class__(30.0, TimeLagKind.LOWER_BOUND)


def test_extrapolates_backwards_with_the_average_rate() -> None:
    table = build([(100, 10.0), (200, 20.0)])
    lag = time_lag(table, 50, 200, 20.0)
    assert lag.kind is TimeLagKind.EXTRAPOLATED
    assert lag.seconds == pytest.approx(15.0)


def test_a_single_sample_cannot_tell_time() -> None:
    table = build([(100, 10.0)])
    assert time_lag(table, 50, 100, 10.0).kind is TimeLagKind.UNKNOWN
    assert time_lag(table, None, 100, 10.0).seconds is None


def test_truncated_log_starts_the_table_over() -> None:
    table = build([(100, 1.0), (200, 2.0), (5, 3.0)])
    assert table == (Point(5, 3.0),)


def test_samples_out_of_order_are_ignored() -> None:
    table = build([(100, 5.0), (200, 4.0), (150, 5.0)])
    assert table == (Point(100, 5.0),)


def test_thinning_keeps_recent_points_dense_and_reaches_far_back() -> None:
    """After 10,000 samples a 16-point table still spans the whole run, densest near now."""
    table = build([(i * 10, float(i)) for i in range(10_000)], capacity=16)
    assert len(table) == 16
    assert table[0] == Point(0, 0.0)
    gaps = [b.time - a.time for a, b in itertools.pairwise(table)]
    assert gaps[-1] < gaps[len(gaps) // 2] < max(gaps)
    # An hour-old offset on a steady stream is still interpolated, within a few percent.
    lag = time_lag(table, 10 * 6_000, table[-1].offset, table[-1].time)
    assert lag.kind is TimeLagKind.INTERPOLATED
    assert math.isclose(lag.seconds or 0, 3_999.0, rel_tol=0.05)


def test_capacity_below_three_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        add_point((), 1, 1.0, 2)

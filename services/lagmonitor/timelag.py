"""Time lag from offsets: how long ago the end of the log was where the group is now.

Kafka keeps no "time of offset N" index a monitor can ask cheaply, so, like
kafka-lag-exporter, we keep a small lookup table per partition of sampled
(end offset, time) points and interpolate in it. The time lag of a committed
offset ``c`` is ``now - t(c)``, where ``t(c)`` is the earliest time the end
offset reached ``c``. Because the message at ``c`` was appended at or after that
moment, the figure errs on the side of reporting more lag, never less.

Two things differ from a plain ring buffer of the last N samples:

* A run of samples with an unchanged end offset keeps only its first and last
  point: an idle topic never pushes useful history out of the table.
* When the table is full, we drop the interior point whose removal costs least
  relative to its age, not the oldest one. Spacing therefore grows with age
  (roughly geometric), so a group that is hours behind is still interpolated
  (with error proportional to its lag) instead of extrapolated from the last
  few minutes.

Everything here is pure: tables are tuples, functions return new tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class Point:
    """The end offset of a partition as seen at ``time`` (Unix seconds)."""

    offset: int
    time: float


Table = tuple[Point, ...]
"""Points with non-decreasing offsets and strictly increasing times."""


class TimeLagKind(StrEnum):
    """How much to trust a time lag figure."""

    ZERO = "zero"  # the group is at the end of the log
    INTERPOLATED = "interpolated"  # between two sampled points
    EXTRAPOLATED = "extrapolated"  # older than the table: the table's average rate, backwards
    LOWER_BOUND = "lower_bound"  # older than the table and no rate known: at least this much
    UNKNOWN = "unknown"  # too few samples (or no committed offset)


@dataclass(frozen=True, slots=True)
class TimeLag:
    seconds: float | None
    kind: TimeLagKind


def add_point(table: Table, offset: int, time: float, capacity: int) -> Table:
    """Record that the end offset was ``offset`` at ``time``.

    A sample older than the newest point is ignored (clocks do not run back for
    us). An end offset below the newest point means the log was truncated or the
    topic recreated: the old points say nothing about the new log, so the table
    starts over.
    """
    if capacity < 3:
        raise ValueError("a lookup table needs room for at least 3 points")
    point = Point(offset, time)
    if not table:
        return (point,)
    last = table[-1]
    if time <= last.time:
        return table
    if offset < last.offset:
        return (point,)
    if offset == last.offset and len(table) >= 2 and table[-2].offset == offset:
        return (*table[:-1], point)
    grown = (*table, point)
    while len(grown) > capacity:
        grown = _drop_cheapest(grown, now=time)
    return grown


def _drop_cheapest(table: Table, now: float) -> Table:
    """Remove the interior point whose loss widens a gap least relative to its age.

    The oldest and newest points are never removed: the first keeps the table's
    reach into the past, the last is the current end offset.
    """
    best_index = 1
    best_cost = float("inf")
    for i in range(1, len(table) - 1):
        merged_gap = table[i + 1].time - table[i - 1].time
        age = max(now - table[i].time, 1e-9)
        cost = merged_gap / age
        if cost < best_cost:
            best_index, best_cost = i, cost
    return table[:best_index] + table[best_index + 1 :]


def time_at_offset(table: Table, offset: int) -> tuple[float, TimeLagKind] | None:
    """The earliest time the end offset was at ``offset``, or None if it never got there.

    Between two points the end offset is assumed to have grown at a constant rate.
    At or before the oldest point we extrapolate backwards with the table's average
    rate; with no rate at all (a single point or an idle topic) the oldest point's
    time is returned as a lower bound of the lag. The result never lies after the
    oldest point's time for such offsets, so the function is monotone in ``offset``.
    """
    if not table or offset > table[-1].offset:
        return None
    first_at_or_after = next(i for i, p in enumerate(table) if p.offset >= offset)
    if first_at_or_after == 0:
        oldest, newest = table[0], table[-1]
        if newest.offset == oldest.offset:
            return oldest.time, TimeLagKind.LOWER_BOUND
        rate = (newest.offset - oldest.offset) / (newest.time - oldest.time)
        return oldest.time - (oldest.offset - offset) / rate, TimeLagKind.EXTRAPOLATED
    before, after = table[first_at_or_after - 1], table[first_at_or_after]
    fraction = (offset - before.offset) / (after.offset - before.offset)
    return before.time + fraction * (after.time - before.time), TimeLagKind.INTERPOLATED


def time_lag(table: Table, committed: int | None, end: int | None, now: float) -> TimeLag:
    """Seconds the group is behind the log's end; 0 when there is no offset lag.

    Call after adding the current end offset to ``table`` so its newest point is
    (end, now). With fewer than two points there is nothing to measure against.
    """
    if committed is None or end is None:
        return TimeLag(None, TimeLagKind.UNKNOWN)
    if committed >= end:
        return TimeLag(0.0, TimeLagKind.ZERO)
    if len(table) < 2:
        return TimeLag(None, TimeLagKind.UNKNOWN)
    found = time_at_offset(table, committed)
    if found is None:
        return TimeLag(None, TimeLagKind.UNKNOWN)
    at, kind = found
    return TimeLag(max(0.0, now - at), kind)

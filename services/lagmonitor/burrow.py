"""Burrow's consumer-lag evaluation rules, over a sliding window per partition.

Burrow reads every commit from ``__consumer_offsets``; we poll committed offsets
instead (one admin call per group, no internal-topic decoding). Polling cannot
see a consumer commit the *same* offset again, so "is anyone committing?" is
answered by the group itself: a partition assigned to a live member counts as
committed-to at every sample (the member is there, heartbeating, and either
progressing or stuck), a partition nobody owns only when its offset moves.
With that one adaptation Burrow's rules apply as written:

1. STOP: lag > 0 and nothing observed for longer than the window (Burrow's
   "now - last commit > last commit - first commit", floored at the window's
   duration so one early observation does not trip it). A consumer that died.
2. REWIND: the committed offset went backwards within the window (and within
   the window's duration). Checked before rule 3, unlike Burrow, because a reset
   is worth knowing about even when the group has caught up again.
3. OK if the lag is 0 now or was 0 anywhere in the window.
4. OK while the window is not yet full (not enough evidence).
5. STALL: the offset did not move over the whole window while lag > 0: a
   consumer that is alive but stuck.
6. WARN: the offset moved but the lag never decreased: falling behind.

ERR marks a partition whose end offset could not be read (or a group that could
not be described); the group's status is its worst partition's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    REWIND = "REWIND"
    STALL = "STALL"
    STOP = "STOP"
    ERR = "ERR"

    @property
    def code(self) -> int:
        """Numeric code, ordered by severity: OK=0 WARN=1 REWIND=2 STALL=3 STOP=4 ERR=5."""
        return _SEVERITY[self]


_SEVERITY = {status: index for index, status in enumerate(Status)}


@dataclass(frozen=True, slots=True)
class Observation:
    """A committed offset seen at ``time``, with the offset lag at that moment."""

    offset: int
    lag: int
    time: float


Window = tuple[Observation, ...]


def observe(window: Window, observation: Observation, size: int, *, owned: bool) -> Window:
    """Add an observation if it is evidence of a commit; keep the last ``size``.

    Evidence is a moved offset, or a live member owning the partition (see the
    module docstring for why).
    """
    if window and not owned and window[-1].offset == observation.offset:
        return window
    return (*window, observation)[-size:]


def _rewound_recently(window: Window, now: float, horizon: float) -> bool:
    return any(
        later.offset < earlier.offset and now - later.time <= horizon
        for earlier, later in pairwise(window)
    )


def partition_status(  # noqa: PLR0911 - one return per Burrow rule reads best
    window: Window, *, lag: int, now: float, size: int, stop_after: float
) -> Status:
    """Burrow's verdict on one partition (rules in the module docstring).

    ``lag`` is the offset lag now; ``stop_after`` the window's duration in
    seconds (window size times the sample interval).
    """
    if not window:
        return Status.OK
    first, last = window[0], window[-1]
    horizon = max(last.time - first.time, stop_after)
    if lag > 0 and now - last.time > horizon:
        return Status.STOP
    if _rewound_recently(window, now, horizon):
        return Status.REWIND
    if lag == 0 or any(o.lag == 0 for o in window):
        return Status.OK
    if len(window) < size:
        return Status.OK
    if all(o.offset == first.offset for o in window):
        return Status.STALL
    if all(b.lag >= a.lag for a, b in pairwise(window)):
        return Status.WARN
    return Status.OK


def worst(statuses: Iterable[Status]) -> Status:
    """A group is as bad as its worst partition; a group with none is OK."""
    return max(statuses, key=lambda s: s.code, default=Status.OK)

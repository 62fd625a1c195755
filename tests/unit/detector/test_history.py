"""The stored pair of snapshots per key: crash replay gives the same events, never new ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.detector.diff import Facet, changes
from services.detector.history import KeyHistory, advance, retire_history
from services.detector.state import StateDecodeError
from tests.unit.detector.builders import Snap, chunk
from tests.unit.detector.test_diff_properties import FACETS, histories


def _ids(facet: Facet, snaps: list[Snap], baseline_at: int) -> list[set[str]]:
    """Event ids per snapshot of a crash-free worker."""
    history: KeyHistory | None = None
    out = []
    for snap in snaps:
        stored, diff = advance(history, chunk(facet, snap, baseline_at=baseline_at), 0)
        history = stored or history
        out.append({c.event_id for c in changes(diff)})
    return out


@given(st.data(), FACETS)
def test_a_crash_between_state_and_output_loses_nothing_and_invents_nothing(
    data: st.DataObject, facet: Facet
) -> None:
    """Whatever was lost (the events, the state write, or both), redelivering the chunk
    from the last committed offset yields every expected id and no other."""
    snaps = data.draw(histories(facet, min_size=2))
    baseline_at = snaps[0].at
    expected = _ids(facet, snaps, baseline_at)
    history: KeyHistory | None = None
    delivered: set[str] = set()
    for index, snap in enumerate(snaps):
        crash = data.draw(st.sampled_from(["none", "events_lost", "state_lost", "both_lost"]))
        stored, diff = advance(history, chunk(facet, snap, baseline_at=baseline_at), 0)
        if crash in {"none", "state_lost"}:
            delivered |= {c.event_id for c in changes(diff)}
        if crash in {"none", "events_lost"}:
            history = stored or history
        if crash != "none":  # the offset was not committed: the chunk comes again
            stored, diff = advance(history, chunk(facet, snap, baseline_at=baseline_at), 0)
            again = {c.event_id for c in changes(diff)}
            assert again == expected[index]
            delivered |= again
            history = stored or history
    assert delivered == set().union(*expected)


@given(st.data(), FACETS)
def test_a_duplicate_gives_the_same_ids_and_an_older_snapshot_nothing(
    data: st.DataObject, facet: Facet
) -> None:
    snaps = data.draw(histories(facet, min_size=2))
    baseline_at = snaps[0].at
    expected = _ids(facet, snaps, baseline_at)
    history: KeyHistory | None = None
    for snap in snaps:
        stored, _ = advance(history, chunk(facet, snap, baseline_at=baseline_at), 0)
        history = stored or history
    assert history is not None
    again, diff = advance(history, chunk(facet, snaps[-1], baseline_at=baseline_at), 0)
    assert again is None
    assert {c.event_id for c in changes(diff)} == expected[-1]
    for old in snaps[:-1]:
        kept, diff = advance(history, chunk(facet, old, baseline_at=baseline_at), 0)
        assert kept is None
        assert len(diff) == 0


def test_the_baseline_is_silent_even_when_redelivered() -> None:
    first = chunk(Facet.MEMBERS, Snap(60_000, frozenset({1, 2})), baseline_at=60_000)
    history, diff = advance(None, first, 2)
    assert history is not None and history.previous is None and history.partition == 2
    assert len(diff) == 0
    again, diff = advance(history, first, 2)
    assert again is None and len(diff) == 0


@given(st.data(), FACETS)
def test_key_history_round_trips(data: st.DataObject, facet: Facet) -> None:
    snaps = data.draw(histories(facet, min_size=2))
    history: KeyHistory | None = None
    for snap in snaps:
        stored, _ = advance(history, chunk(facet, snap, baseline_at=snaps[0].at), 5)
        history = stored or history
    assert history is not None
    assert KeyHistory.from_bytes(history.to_bytes()) == history


def test_retired_post_keeps_no_ids_and_a_late_redelivery_stays_silent() -> None:
    snap = Snap(120_000, frozenset({1, 2}))
    history, _ = advance(None, chunk(Facet.LIKES, Snap(60_000), baseline_at=60_000), 0)
    history, _ = advance(history, chunk(Facet.LIKES, snap, baseline_at=60_000), 0)
    tomb = retire_history(history, 180_000)
    assert tomb is not None and tomb.current.retired and tomb.previous is None
    assert retire_history(tomb, 180_000) is None
    stored, diff = advance(tomb, chunk(Facet.LIKES, snap, baseline_at=60_000), 0)
    assert stored is None and len(diff) == 0


def _real() -> bytes:
    first = chunk(Facet.MEMBERS, Snap(60_000, frozenset({1})), baseline_at=60_000)
    history, _ = advance(None, first, 0)
    history, _ = advance(history, chunk(Facet.MEMBERS, Snap(120_000), baseline_at=60_000), 0)
    assert history is not None
    return history.to_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"XXXX" + bytes(10), "not a detector key history"),
        (_real()[:20], "truncated|too short"),
        (_real() + b"!", "trailing|corrupt"),
    ],
)
def test_bad_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(StateDecodeError, match=message):
        KeyHistory.from_bytes(data)

"""The detector's changelog value: exact round trip, compact, and loud on bad bytes."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.detector.state import FacetState, InvalidArrayError, StateDecodeError
from tests.unit.detector.builders import ids, texts

INT64 = st.integers(-(2**63), 2**63 - 1)


# Comment ids: digits (VK), base64-ish (OK), and text that needs JSON/UTF-8 care.
# No NUL: a numpy str array cannot hold a trailing one, so no comment id can have it.
COMMENT_ID = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=12)


@st.composite
def states(draw: st.DrawFn) -> FacetState:
    at = draw(INT64)
    if draw(st.booleans()):
        return FacetState(at, ids(draw(st.sets(st.one_of(INT64, st.integers(-50, 5_000))))))
    comment_ids = texts(draw(st.sets(COMMENT_ID, max_size=60)))
    authors = draw(st.lists(INT64, min_size=comment_ids.size, max_size=comment_ids.size))
    return FacetState(at, comment_ids, np.array(authors, dtype=np.int64))


@given(states())
def test_round_trip_is_exact(state: FacetState) -> None:
    back = FacetState.from_bytes(state.to_bytes())
    assert back == state
    assert back.ids.dtype.kind == state.ids.dtype.kind
    assert back.ids.tolist() == state.ids.tolist()
    assert (back.authors is None) == (state.authors is None)
    if state.authors is not None:
        assert back.authors is not None
        assert back.authors.tolist() == state.authors.tolist()


@pytest.mark.parametrize("comments", [False, True])
def test_empty_and_retired_states_round_trip(comments: bool) -> None:
    empty = texts([]) if comments else ids([])
    authors = ids([]) if comments else None
    for state in (
        FacetState(5, empty, authors),
        FacetState(5, empty, authors, retired=True),
    ):
        data = state.to_bytes()
        assert len(data) == 24
        back = FacetState.from_bytes(data)
        assert back == state
        assert back.retired == state.retired


def test_a_bucket_of_real_looking_ids_takes_under_three_bytes_an_id() -> None:
    rng = np.random.default_rng(1)
    members = np.unique(rng.integers(1, 900_000_000, 16_000, dtype=np.int64))
    data = FacetState(1, members).to_bytes()
    assert len(data) < 3 * members.size  # 8 bytes an id raw
    assert FacetState.from_bytes(data) == FacetState(1, members)


def test_equality_is_by_value() -> None:
    assert FacetState(1, ids([1, 2])) == FacetState(1, ids([1, 2]))
    assert FacetState(1, ids([1, 2])) != FacetState(2, ids([1, 2]))
    assert FacetState(1, ids([1, 2])) != FacetState(1, ids([1, 3]))
    assert FacetState(1, ids([1])) != FacetState(1, texts(["1"]), ids([1]))
    assert FacetState(1, texts(["1"]), ids([1])) != FacetState(1, texts(["1"]), ids([2]))
    assert FacetState(1, texts(["1"]), ids([1])) != FacetState(1, texts(["2"]), ids([1]))
    assert FacetState(1, ids([])) != FacetState(1, ids([]), retired=True)


def test_state_refuses_what_it_cannot_diff() -> None:
    with pytest.raises(InvalidArrayError, match="strictly increasing"):
        FacetState(1, np.array([3, 1], dtype=np.int64))
    with pytest.raises(InvalidArrayError, match="retired state keeps no ids"):
        FacetState(1, ids([1]), retired=True)
    with pytest.raises(InvalidArrayError, match="expected a numpy str array"):
        FacetState(1, ids([1]), ids([1]))
    with pytest.raises(InvalidArrayError, match="expected dtype int64"):
        FacetState(1, texts(["1"]))
    with pytest.raises(InvalidArrayError, match="snapshot_at must be an int"):
        FacetState(1.5, ids([1]))  # type: ignore[arg-type]


def _header(version: int = 1, flags: int = 0, count: int = 2) -> bytes:
    return struct.pack("<4sBBHqQ", b"SLDS", version, flags, 0, 9, count)


GOOD = FacetState(9, ids([1, 2])).to_bytes()
COMMENTS = FacetState(9, texts(["a", "b"]), ids([7, 8])).to_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"SLDS" + b"\0" * 10, "too short"),
        (b"XXXX" + GOOD[4:], "not a detector state"),
        (_header(version=2) + GOOD[24:], "unknown detector state version 2"),
        (GOOD[:-3], "corrupt"),
        (GOOD + b"\0", "truncated or trailing"),
        (_header(count=3) + GOOD[24:], "does not hold 3 ids"),
        (_header(flags=1) + GOOD[24:], "does not hold 2 comments"),
        (_header(flags=1, count=3) + COMMENTS[24:], "does not hold 3 comments"),
        (_header(flags=1, count=1) + COMMENTS[24:], "does not hold 1 comments"),
        (_header(flags=0) + COMMENTS[24:], "does not hold 2 ids"),
        (COMMENTS + b"\0", "truncated or trailing"),
        (
            _header(flags=1, count=1)
            + zlib.compress(bytes(8) + (1).to_bytes(8, "little") + b"\xff"),  # not UTF-8
            "corrupt detector state",
        ),
        (_header(count=0) + b"x", "trailing bytes"),
        (_header() + b"not zlib at all", "corrupt detector state"),
        # deltas 5 then 0: ids 5, 5 (a duplicate the diff would mis-handle)
        (
            _header()
            + zlib.compress(np.array([5, 0], dtype="<u8").view(np.uint8).reshape(2, 8).T.tobytes()),
            "strictly increasing",
        ),
    ],
)
def test_bad_bytes_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(StateDecodeError, match=message):
        FacetState.from_bytes(data)

"""Paging and batching arithmetic, and the VKScript the client sends."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.collector.api.paging import (
    MAX_EXECUTE_CALLS,
    Call,
    chunked,
    execute_code,
    min_requests,
    page_offsets,
    pages_needed,
)
from services.simulator import vkscript


@given(total=st.integers(0, 100_000), size=st.integers(1, 1000))
def test_offsets_cover_every_item_exactly_once(total: int, size: int) -> None:
    covered = [
        i for offset in page_offsets(total, size) for i in range(offset, min(offset + size, total))
    ]
    assert covered == list(range(total))
    assert len(page_offsets(total, size)) == (pages_needed(total, size) if total else 0)


def test_known_page_counts() -> None:
    assert pages_needed(25_000, 1000) == 25
    assert pages_needed(25_001, 1000) == 26
    assert pages_needed(0, 1000) == 1  # an empty list still costs one page to learn it
    assert page_offsets(2500, 1000, start=1000) == [1000, 2000]
    assert min_requests(25) == 1 and min_requests(26) == 2 and min_requests(0) == 0
    assert min_requests(90) == 4


@given(items=st.lists(st.integers()), size=st.integers(1, 30))
def test_chunks_keep_order_and_size(items: list[int], size: int) -> None:
    chunks = chunked(items, size)
    assert [x for chunk in chunks for x in chunk] == items
    assert all(1 <= len(chunk) <= size for chunk in chunks)


def test_execute_code_is_the_plain_return_of_an_array_of_calls() -> None:
    code = execute_code(
        [
            Call("groups.getMembers", {"group_id": 1, "offset": 0, "count": 1000}),
            Call("likes.getList", {"type": "post", "owner_id": -1, "item_id": 5}),
        ]
    )
    assert code == (
        'return [API.groups.getMembers({"group_id":1,"offset":0,"count":1000}),'
        'API.likes.getList({"type":"post","owner_id":-1,"item_id":5})];'
    )


def test_execute_takes_one_to_twenty_five_calls() -> None:
    with pytest.raises(ValueError, match="at least one"):
        execute_code([])
    with pytest.raises(ValueError, match="at most 25"):
        execute_code([Call("wall.get")] * (MAX_EXECUTE_CALLS + 1))


param_values = st.one_of(st.integers(-(2**40), 2**40), st.text(max_size=15))
calls = st.lists(
    st.builds(
        Call,
        method=st.sampled_from(["groups.getMembers", "likes.getList", "wall.getComments"]),
        params=st.dictionaries(
            st.from_regex(r"[a-z_]{1,10}", fullmatch=True), param_values, max_size=5
        ),
    ),
    min_size=1,
    max_size=MAX_EXECUTE_CALLS,
)


@given(calls=calls)
def test_the_simulator_reads_back_exactly_the_calls_the_client_wrote(calls: list[Call]) -> None:
    parsed = vkscript.parse(execute_code(calls))
    assert [(c.method, c.params) for c in parsed] == [(c.method, dict(c.params)) for c in calls]

"""The plain records the clients hand out, and small parsing rules behind them."""

from __future__ import annotations

import numpy as np
import pytest

from services.collector.api.ok import _comment_date, comment_id, ok_error
from services.collector.api.records import GroupMembers, Post, PostFacets, Window, sorted_ids
from services.collector.api.vk import vk_error


def test_id_arrays_are_sorted_unique_int64_and_read_only() -> None:
    ids = sorted_ids([5, 3, 5, 2**40])
    assert ids.dtype == np.int64 and ids.tolist() == [3, 5, 2**40]
    with pytest.raises(ValueError, match="read-only"):
        ids[0] = 1


def test_records_compare_by_content() -> None:
    a = GroupMembers("vk", 1, sorted_ids([1, 2]))
    assert a == GroupMembers("vk", 1, sorted_ids([2, 1]))
    assert a != GroupMembers("vk", 1, sorted_ids([1]))
    post = Post(1, 10)
    facets = PostFacets("ok", 1, post, sorted_ids([1]), None, ())
    assert facets == PostFacets("ok", 1, post, sorted_ids([1]), None, ())
    assert facets != PostFacets("ok", 1, post, sorted_ids([1]), sorted_ids([]), ())


def test_a_window_must_say_something() -> None:
    with pytest.raises(ValueError, match="needs"):
        Window(last_posts=None, days=None)
    with pytest.raises(ValueError, match="positive"):
        Window(days=0)
    assert Window(last_posts=None, days=3).days == 3


def test_ok_legacy_dates_are_moscow_time_and_date_ms_wins() -> None:
    assert _comment_date({"date": "2023-11-14 22:13:20"}) == 1_699_989_200
    assert _comment_date({"date": "2000-01-01 00:00:00", "date_ms": 1_700_000_000_123}) == (
        1_700_000_000
    )


def test_error_bodies_are_told_apart_from_results() -> None:
    assert vk_error({"error": {"error_code": 6, "error_msg": "Too many"}}) == (6, "Too many")
    assert vk_error({"response": {"count": 0}}) is None
    assert ok_error({"error_code": 102, "error_msg": "PARAM_SESSION_EXPIRED"}) == (
        102,
        "PARAM_SESSION_EXPIRED",
    )
    assert ok_error([{"uid": "1"}]) is None


def test_ok_comment_ids_become_stable_ints() -> None:
    assert comment_id("123") == 123
    opaque = comment_id("MTcwMDAwMDAwMDox")
    assert opaque == comment_id("MTcwMDAwMDAwMDox") and 0 <= opaque < 2**63
    assert opaque != comment_id("MTcwMDAwMDAwMDoy")

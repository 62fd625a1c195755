"""Bucketing, chunk building and the size guard: what the detector will be handed."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.collector.api import Comment, GroupMembers, Post, PostFacets, Skip
from services.collector.api.records import sorted_ids
from services.collector.chunks import (
    Collected,
    MessageTooLargeError,
    RunBuildError,
    RunMeta,
    bucket_members,
    build_chunks,
    check_size,
    post_id_of,
)
from services.contracts.codec import SingleObjectCodec
from services.contracts.models import (
    MembersChunk,
    PostCommentsChunk,
    PostLikesChunk,
    PostRepostsChunk,
    RunManifest,
)

AT = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
META = RunMeta("run-1", AT, AT, 4)


@given(st.lists(st.integers(min_value=1, max_value=2**62), max_size=300), st.integers(1, 40))
def test_buckets_partition_the_ids_by_id_mod_count_sorted(ids: list[int], count: int) -> None:
    buckets = bucket_members(sorted_ids(ids), count)
    assert len(buckets) == count
    for number, bucket in enumerate(buckets):
        assert bucket.tolist() == sorted(i for i in set(ids) if i % count == number)
    assert sorted(np.concatenate(buckets).tolist()) == sorted(set(ids))


def test_every_bucket_is_present_even_when_empty() -> None:
    buckets = bucket_members(sorted_ids([3, 19]), 16)
    assert [len(b) for b in buckets] == [0, 0, 0, 2] + [0] * 12


def vk_post(post_id: int, likers: list[int], reposters: list[int] | None = None) -> PostFacets:
    return PostFacets(
        network="vk",
        group_id=42,
        post=Post(id=post_id, date=1_767_000_000 + post_id),
        likers=sorted_ids(likers),
        reposters=None if reposters is None else sorted_ids(reposters),
        comments=(Comment(id=5, author_id=9, date=0), Comment(id=6, author_id=-42, date=0)),
    )


def test_a_run_is_buckets_then_post_facets_ascending_then_the_manifest() -> None:
    collected = Collected.gather(
        "vk",
        42,
        [
            GroupMembers("vk", 42, sorted_ids([1, 2, 3, 4, 5, 6, 7, 8, 9])),
            vk_post(20, [1, 2], [3]),
            vk_post(10, [4], []),
            Skip("vk:post:-42_15", 15, "Access denied", "likes.getList"),
        ],
    )
    chunks = list(build_chunks(collected, META))
    kinds = [type(c).__name__ for c in chunks]
    assert kinds == ["MembersChunk"] * 4 + [
        "PostLikesChunk",
        "PostCommentsChunk",
        "PostRepostsChunk",
    ] * 2 + ["RunManifest"]
    members = [c for c in chunks if isinstance(c, MembersChunk)]
    assert [c.member_ids for c in members] == [(4, 8), (1, 5, 9), (2, 6), (3, 7)]
    assert [c.key().to_bytes() for c in chunks[4:7]] == [
        b"vk:42:likes:10",
        b"vk:42:comments:10",
        b"vk:42:reposts:10",
    ]
    comments = chunks[5]
    assert isinstance(comments, PostCommentsChunk)
    # Comment 6 is the group's own (a community's negative id): no user, not published.
    assert [(c.comment_id, c.author_id) for c in comments.comments] == [("5", 9)]
    manifest = chunks[-1]
    assert isinstance(manifest, RunManifest)
    assert manifest.key().to_bytes() == b"vk:42:manifest:0"
    assert manifest.chunk_count == len(chunks) - 1
    assert manifest.post_ids == (10, 15, 20)
    assert {(s.facet, s.post_id) for s in manifest.skipped} == {
        ("likes", 15),
        ("comments", 15),
        ("reposts", 15),
    }
    assert all(s.reason == "vk error 15 on likes.getList: Access denied" for s in manifest.skipped)
    assert all(c.is_baseline and c.run_id == "run-1" for c in chunks)


def test_ids_below_one_are_not_users_and_are_left_out_of_the_run() -> None:
    """A community (negative id) that likes, reposts or comments, or a 0 for "none", can
    never be linked; the contract refuses such ids, so the run leaves them out instead
    of failing for the group every time."""
    post = vk_post(20, [-7, 0, 1, 2], [-42, 3])
    collected = Collected.gather(
        "vk", 42, [GroupMembers("vk", 42, sorted_ids([-1, 0, 1, 2, 3])), post]
    )
    chunks = list(build_chunks(collected, META))
    members = sorted(i for c in chunks if isinstance(c, MembersChunk) for i in c.member_ids)
    assert members == [1, 2, 3]
    likes = next(c for c in chunks if isinstance(c, PostLikesChunk))
    reposts = next(c for c in chunks if isinstance(c, PostRepostsChunk))
    comments = next(c for c in chunks if isinstance(c, PostCommentsChunk))
    assert likes.user_ids == (1, 2)
    assert reposts.user_ids == (3,)
    assert [c.author_id for c in comments.comments] == [9]


def test_ok_posts_have_no_reposts_chunk() -> None:
    post = PostFacets("ok", 7, Post(1, 1_767_000_000), sorted_ids([5]), None, ())
    collected = Collected.gather("ok", 7, [GroupMembers("ok", 7, sorted_ids([5])), post])
    chunks = list(build_chunks(collected, RunMeta("r", AT, datetime(2026, 1, 1, tzinfo=UTC), 1)))
    assert [type(c) for c in chunks] == [
        MembersChunk,
        PostLikesChunk,
        PostCommentsChunk,
        RunManifest,
    ]
    assert not chunks[0].is_baseline
    assert not any(isinstance(c, PostRepostsChunk) for c in chunks)


def test_every_post_chunk_carries_the_baselines_highest_post_id() -> None:
    posts = [
        PostFacets("vk", 7, Post(post_id, 1_767_000_000), sorted_ids([5]), sorted_ids([]), ())
        for post_id in (40, 41)
    ]
    collected = Collected.gather("vk", 7, [GroupMembers("vk", 7, sorted_ids([5])), *posts])
    base = datetime(2026, 1, 1, tzinfo=UTC)
    chunks = list(build_chunks(collected, RunMeta("r", AT, base, 1, baseline_post_id=39)))
    on_posts = [
        c for c in chunks if isinstance(c, PostLikesChunk | PostCommentsChunk | PostRepostsChunk)
    ]
    assert len(on_posts) == 6
    assert {c.baseline_post_id for c in on_posts} == {39}
    unknown = list(build_chunks(collected, RunMeta("r", AT, base, 1)))
    assert {getattr(c, "baseline_post_id", None) for c in unknown} == {None}


def test_a_post_dated_outside_the_contract_is_skipped_not_a_failed_run() -> None:
    """OK leaves a topic's date out now and then (0 = 1970): the run still lands, with
    that post listed as skipped, and the other posts are collected."""
    posts = [
        PostFacets("ok", 7, Post(1, 0), sorted_ids([5]), None, ()),
        PostFacets("ok", 7, Post(2, 1_767_000_000), sorted_ids([5]), None, ()),
    ]
    collected = Collected.gather("ok", 7, [GroupMembers("ok", 7, sorted_ids([5])), *posts])
    chunks = list(build_chunks(collected, RunMeta("r", AT, datetime(2026, 1, 1, tzinfo=UTC), 1)))
    assert {c.post_id for c in chunks if isinstance(c, PostLikesChunk)} == {2}
    manifest = chunks[-1]
    assert isinstance(manifest, RunManifest)
    assert manifest.post_ids == (1, 2)
    assert {(s.post_id, s.facet) for s in manifest.skipped} == {(1, "likes"), (1, "comments")}
    assert all("outside the contract" in s.reason for s in manifest.skipped)


@pytest.mark.parametrize(
    "items",
    [
        [Skip("vk:group:42", 203, "Access to the group is denied", "groups.getMembers")],
        [GroupMembers("vk", 42, sorted_ids([1])), Skip("vk:group:42", 15, "denied", "wall.get")],
        [],
    ],
)
def test_an_unreadable_group_publishes_nothing(items: list[GroupMembers | Skip]) -> None:
    with pytest.raises(RunBuildError, match="not readable"):
        build_chunks(Collected.gather("vk", 42, items), META)


def test_post_ids_are_parsed_from_skip_objects() -> None:
    assert post_id_of(Skip("vk:post:-42_7", 15, "")) == 7
    assert post_id_of(Skip("ok:topic:5200_66", 300, "")) == 66
    assert post_id_of(Skip("vk:group:42", 203, "")) is None


def test_the_size_guard_refuses_with_a_hint_and_accepts_under_the_limit() -> None:
    check_size(b"vk:1:members:0", b"x" * 1000, 4096)
    with pytest.raises(MessageTooLargeError, match="bucket_count"):
        check_size(b"vk:1:members:0", b"x" * 4000, 4096)
    with pytest.raises(MessageTooLargeError, match="post window"):
        check_size(b"vk:1:likes:5", b"x" * 4000, 4096)


def test_a_million_member_bucket_of_sixteen_fits_the_topic_limit() -> None:
    rng = np.random.default_rng(1)
    ids = sorted_ids(rng.integers(1, 900_000_000, size=1_000_000).tolist())
    collected = Collected.gather("vk", 1, [GroupMembers("vk", 1, ids)])
    codec = SingleObjectCodec()
    biggest = max(len(codec.encode(c)) for c in build_chunks(collected, RunMeta("r", AT, AT, 16)))
    assert biggest < 8 * 1024 * 1024 // 8

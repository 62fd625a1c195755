"""The world model's rules: ids, threads, deletions, the member cache."""

from __future__ import annotations

import pytest

from services.simulator import vk_api
from services.simulator.world import World, WorldError


def test_members_stay_sorted_through_changes() -> None:
    world = World()
    world.add_group("vk", 1, [5, 3, 9])
    assert world.group("vk", 1).sorted_members().tolist() == [3, 5, 9]
    world.add_members("vk", 1, [1])
    world.remove_members("vk", 1, [9])
    assert world.group("vk", 1).sorted_members().tolist() == [1, 3, 5]


def test_a_reply_to_a_reply_joins_the_root_thread() -> None:
    world = World(clock=lambda: 10)
    world.add_group("vk", 1)
    post = world.add_post("vk", 1)
    root = world.comment("vk", 1, post, 7)
    reply = world.comment("vk", 1, post, 8, reply_to=root)
    nested = world.comment("vk", 1, post, 9, reply_to=reply)
    sim_post = world.post("vk", 1, post)
    assert [c.id for c in sim_post.replies(root)] == [reply, nested]


def test_a_deleted_root_stays_visible_only_while_it_has_live_replies() -> None:
    world = World()
    world.add_group("vk", 1)
    post = world.add_post("vk", 1)
    root = world.comment("vk", 1, post, 7)
    reply = world.comment("vk", 1, post, 8, reply_to=root)
    world.delete_comment("vk", 1, post, root)
    sim_post = world.post("vk", 1, post)
    assert [c.id for c in sim_post.roots()] == [root]
    world.delete_comment("vk", 1, post, reply)
    assert sim_post.roots() == []


def test_the_wall_shows_a_pinned_post_first_then_newest_first() -> None:
    world = World()
    world.add_group("vk", 1)
    old_pinned = world.add_post("vk", 1, date=100, pinned=True)
    first = world.add_post("vk", 1, date=200)
    second = world.add_post("vk", 1, date=300)
    deleted = world.add_post("vk", 1, date=400)
    world.delete_post("vk", 1, deleted)
    assert [p.id for p in world.group("vk", 1).live_posts()] == [old_pinned, second, first]


def test_ok_has_no_reposts_and_unknown_things_are_errors() -> None:
    world = World()
    world.add_group("ok", 1)
    post = world.add_post("ok", 1)
    with pytest.raises(WorldError, match="no reposts"):
        world.repost("ok", 1, post, 5)
    with pytest.raises(WorldError):
        world.like("ok", 1, post + 1, 5)
    with pytest.raises(WorldError):
        world.group("vk", 1)
    with pytest.raises(WorldError):
        world.add_group("ok", 1)


def test_membership_changes_ignore_repeats_and_strangers() -> None:
    world = World()
    world.add_group("vk", 1, [5, 3, 9, 3])
    world.add_members("vk", 1, [5, 7, 7, 11])
    world.remove_members("vk", 1, [4, 9, 100])
    group = world.group("vk", 1)
    assert group.sorted_members().tolist() == [3, 5, 7, 11]
    assert group.is_member(7) and not group.is_member(9) and not group.is_member(12)


def test_a_million_member_group_is_one_compact_array_paged_by_slices() -> None:
    world = World()
    world.add_group("vk", 1, range(1, 2_000_001, 2))
    group = world.group("vk", 1)
    assert group.members.nbytes == 8_000_000
    world.add_members("vk", 1, [2])
    world.remove_members("vk", 1, [1])
    pages = [
        vk_api.groups_get_members(world, {"group_id": "1", "offset": offset, "count": 1000})
        for offset in range(0, 1_000_000, 1000)
    ]
    assert {page["count"] for page in pages} == {1_000_000}
    ids = [user for page in pages for user in page["items"]]
    assert ids[:2] == [2, 3] and ids[-1] == 1_999_999 and len(ids) == 1_000_000

"""VK methods answered from the world: paging exactly like VK, and VK's error shapes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.simulator import vk_api
from services.simulator.world import World


@settings(max_examples=50)
@given(
    members=st.sets(st.integers(1, 10**9), max_size=3000),
    count=st.integers(1, 1500),
)
def test_member_pages_cover_the_group_exactly_once(members: set[int], count: int) -> None:
    world = World()
    world.add_group("vk", 1, members)
    got: list[int] = []
    offset = 0
    while True:
        page = vk_api.call(
            world, "groups.getMembers", {"group_id": "1", "offset": offset, "count": count}
        )
        assert page["count"] == len(members)
        got += page["items"]
        assert len(page["items"]) <= min(count, 1000)
        offset += min(count, 1000)
        if offset >= page["count"]:
            break
    assert got == sorted(members)


def test_likes_are_newest_first_and_copies_are_the_reposters() -> None:
    world = World()
    world.add_group("vk", 1)
    post = world.add_post("vk", 1)
    for user in (10, 20, 30):
        world.like("vk", 1, post, user)
    world.repost("vk", 1, post, 20)
    params = {"type": "post", "owner_id": "-1", "item_id": str(post)}
    assert vk_api.call(world, "likes.getList", params) == {"count": 3, "items": [30, 20, 10]}
    copies = vk_api.call(world, "likes.getList", {**params, "filter": "copies"})
    assert copies == {"count": 1, "items": [20]}
    reposts = vk_api.call(world, "wall.getReposts", {"owner_id": "-1", "post_id": str(post)})
    assert [r["owner_id"] for r in reposts["items"]] == [20]


def test_comments_come_with_thread_previews_and_counts() -> None:
    world = World(clock=lambda: 5)
    world.add_group("vk", 1)
    post = world.add_post("vk", 1)
    roots = [world.comment("vk", 1, post, 100 + i) for i in range(3)]
    replies = [world.comment("vk", 1, post, 7, reply_to=roots[0]) for _ in range(12)]
    page = vk_api.call(
        world,
        "wall.getComments",
        {"owner_id": "-1", "post_id": str(post), "count": "2", "thread_items_count": "10"},
    )
    assert page["count"] == 15 and page["current_level_count"] == 3
    assert [item["id"] for item in page["items"]] == roots[:2]
    thread = page["items"][0]["thread"]
    assert thread["count"] == 12 and [r["id"] for r in thread["items"]] == replies[:10]
    assert thread["items"][0]["parents_stack"] == [roots[0]]
    rest = vk_api.call(
        world,
        "wall.getComments",
        {"owner_id": "-1", "post_id": str(post), "comment_id": str(roots[0]), "offset": "10"},
    )
    assert rest["current_level_count"] == 12
    assert [r["id"] for r in rest["items"]] == replies[10:]


def test_a_deleted_post_is_error_15_and_a_missing_parameter_error_100() -> None:
    world = World()
    world.add_group("vk", 1)
    post = world.add_post("vk", 1)
    world.delete_post("vk", 1, post)
    with pytest.raises(vk_api.VkApiError) as deleted:
        vk_api.call(world, "wall.getComments", {"owner_id": "-1", "post_id": str(post)})
    assert deleted.value.code == 15
    with pytest.raises(vk_api.VkApiError) as missing:
        vk_api.call(world, "groups.getMembers", {})
    assert missing.value.code == 100
    with pytest.raises(vk_api.VkApiError) as unknown:
        vk_api.call(world, "users.get", {})
    assert unknown.value.code == 3

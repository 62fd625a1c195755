"""A small, deterministic demo world: one VK group and one OK group with activity."""

from __future__ import annotations

import random

from services.simulator.world import NetworkName, World

DEMO_VK_GROUP = 1001
DEMO_OK_GROUP = 52_000_000_000_001
DEMO_USERS = range(1, 5001)


def seed_demo(world: World, seed: int = 7) -> None:
    """Populate ``world`` with members, posts, likes, reposts and comment threads."""
    rng = random.Random(seed)
    now = world.now()
    users = list(DEMO_USERS)
    world.add_group("vk", DEMO_VK_GROUP, rng.sample(users, 3000))
    world.add_group("ok", DEMO_OK_GROUP, rng.sample(users, 1500))
    plan: list[tuple[NetworkName, int, int]] = [
        ("vk", DEMO_VK_GROUP, 20),
        ("ok", DEMO_OK_GROUP, 10),
    ]
    for network, group_id, posts in plan:
        members = world.group(network, group_id).members.tolist()
        for index in range(posts):
            post_id = world.add_post(network, group_id, date=now - (posts - index) * 3600)
            for user in rng.sample(members, rng.randint(0, 60)):
                world.like(network, group_id, post_id, user)
            if network == "vk":
                for user in rng.sample(members, rng.randint(0, 5)):
                    world.repost(network, group_id, post_id, user)
            for _ in range(rng.randint(0, 8)):
                root = world.comment(network, group_id, post_id, rng.choice(members))
                for _ in range(rng.randint(0, 3)):
                    world.comment(network, group_id, post_id, rng.choice(members), reply_to=root)

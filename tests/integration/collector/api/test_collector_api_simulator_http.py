"""The simulator as the demo uses it: its control API over HTTP, and as a process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import httpx
from pydantic import SecretStr

from services.collector.api import PostFacets, VkClient, VkClientSettings, Window
from services.simulator.testing import VK_GROUP_TOKEN, make_simulator, running


def test_changes_made_through_the_control_api_show_up_in_the_next_collection() -> None:
    async def main() -> tuple[list[int], list[int], int, dict[str, dict[str, int]]]:
        async with (
            running(make_simulator()) as server,
            httpx.AsyncClient(base_url=server.base_url) as control,
        ):
            group = "/_control/groups/vk/7"
            created = await control.post("/_control/groups", json={"network": "vk", "group_id": 7})
            assert created.status_code == 201
            await control.post(group + "/members", json={"add": [10, 11, 12]})
            post_id = (await control.post(group + "/posts", json={})).json()["post_id"]
            for user in (10, 11):
                await control.post(f"{group}/posts/{post_id}/likes", json={"user_id": user})
            await control.post(f"{group}/posts/{post_id}/reposts", json={"user_id": 12})
            root = (
                await control.post(f"{group}/posts/{post_id}/comments", json={"author_id": 11})
            ).json()["comment_id"]
            await control.post(
                f"{group}/posts/{post_id}/comments", json={"author_id": 12, "reply_to": root}
            )
            await control.delete(f"{group}/posts/{post_id}/likes/10")
            await control.post(group + "/members", json={"remove": [10]})
            missing = await control.delete(f"{group}/posts/999")
            assert missing.status_code == 404

            config = VkClientSettings(
                access_token=SecretStr(VK_GROUP_TOKEN),
                token_kind="group",
                base_url=server.vk_base_url,
            )
            async with VkClient(config) as client:
                items = [item async for item in client.collect_group(7, Window(last_posts=5))]
            facet = next(item for item in items if isinstance(item, PostFacets))
            counters = (await control.get("/_control/counters")).json()
            return (
                facet.likers.tolist(),
                facet.reposters.tolist() if facet.reposters is not None else [],
                len(facet.comments),
                counters,
            )

    likers, reposters, comments, counters = asyncio.run(main())
    assert likers == [11]
    assert reposters == [12]
    assert comments == 2
    assert counters["requests"]["vk:groups.getMembers"] == 1
    assert counters["calls"]["vk:likes.getList"] == 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_simulator_runs_as_a_process_with_the_demo_world() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.simulator", "serve", "--port", str(port), "--seed-demo"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "SIMULATOR_VK_USER_TOKEN": "demo-token"},
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                reply = httpx.post(
                    f"http://127.0.0.1:{port}/method/groups.getMembers",
                    data={
                        "group_id": "1001",
                        "count": "3",
                        "access_token": "demo-token",
                        "v": "5.199",
                    },
                )
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the simulator did not start in 15 s"
                time.sleep(0.1)
        assert reply.json()["response"]["count"] == 3000
    finally:
        process.terminate()
        process.wait(timeout=10)

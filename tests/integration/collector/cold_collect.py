"""One collection of one VK group from a brand-new process, for the rate-limit test.

``python -m tests.integration.collector.cold_collect BASE_URL TOKEN GROUP_ID POSTS``
reads the group once through ``VkClient`` (its own limiter, its own HTTP client,
no connection yet: everything a first run of a fresh collector has) and prints
the client's counters as JSON. The test serves the simulator and judges.
"""

from __future__ import annotations

import asyncio
import json
import sys

from pydantic import SecretStr

from services.collector.api import VkClient, VkClientSettings, Window


async def collect(base_url: str, token: str, group_id: int, posts: int) -> dict[str, object]:
    settings = VkClientSettings(access_token=SecretStr(token), base_url=base_url)
    async with VkClient(settings) as client:
        items = [item async for item in client.collect_group(group_id, Window(last_posts=posts))]
    counters = client.counters
    return {
        "items": len(items),
        "skips": len(client.skips),
        "requests": counters.total_requests,
        "retries": counters.retries,
        "errors": {str(code): n for code, n in counters.errors.items()},
    }


def main(argv: list[str]) -> None:
    base_url, token, group_id, posts = argv
    print(json.dumps(asyncio.run(collect(base_url, token, int(group_id), int(posts)))))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Run the simulator inside the current event loop, on a free port of 127.0.0.1.

For tests and the demo: ``async with running(simulator) as server:`` then point
a client at ``server.vk_base_url`` / ``server.ok_base_url``. The world stays
reachable as ``server.simulator.world`` to change it between collections.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from services.simulator.endpoints import create_app
from services.simulator.enforcement import OkApp, Simulator, VkToken
from services.simulator.world import World

VK_USER_TOKEN = "test-vk-user-token"  # noqa: S105 -- a fake credential for the simulator
VK_GROUP_TOKEN = "test-vk-group-token"  # noqa: S105
OK_APP_KEY = "TESTOKAPPKEY"
OK_APP_SECRET = "test-ok-app-secret"  # noqa: S105
OK_TOKEN = "test-ok-access-token"  # noqa: S105


def make_simulator(
    world: World | None = None,
    *,
    vk_user_rps: int = 3,
    vk_group_rps: int = 20,
    ok_rps: int = 0,
    extra_vk_tokens: Mapping[str, VkToken] | None = None,
) -> Simulator:
    """A simulator accepting the test credentials above, with VK's real rate limits."""
    return Simulator(
        world or World(),
        vk_tokens={
            VK_USER_TOKEN: VkToken("user", vk_user_rps),
            VK_GROUP_TOKEN: VkToken("group", vk_group_rps),
            **(extra_vk_tokens or {}),
        },
        ok_app=OkApp(OK_APP_KEY, OK_APP_SECRET, {OK_TOKEN: ok_rps}),
    )


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    simulator: Simulator
    base_url: str

    @property
    def vk_base_url(self) -> str:
        return self.base_url + "/method/"

    @property
    def ok_base_url(self) -> str:
        return self.base_url + "/"


@asynccontextmanager
async def running(simulator: Simulator, host: str = "127.0.0.1") -> AsyncIterator[RunningSimulator]:
    """Serve ``simulator`` over real HTTP until the block ends."""
    runner = web.AppRunner(create_app(simulator), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield RunningSimulator(simulator=simulator, base_url=f"http://{host}:{port}")
    finally:
        await runner.cleanup()

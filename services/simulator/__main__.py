"""``python -m services.simulator --port 8081``: serve the simulated VK and OK APIs."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from aiohttp import web

from services.simulator.endpoints import create_app
from services.simulator.enforcement import OkApp, Simulator, VkToken
from services.simulator.seed import seed_demo
from services.simulator.settings import SimulatorSettings
from services.simulator.world import World


def build(settings: SimulatorSettings) -> Simulator:
    """The simulator the settings describe (tokens, rate limits, demo data)."""
    world = World()
    if settings.seed_demo:
        seed_demo(world, settings.seed)
    return Simulator(
        world,
        vk_tokens={
            settings.vk_user_token.get_secret_value(): VkToken("user", settings.vk_user_rps),
            settings.vk_group_token.get_secret_value(): VkToken("group", settings.vk_group_rps),
        },
        ok_app=OkApp(
            application_key=settings.ok_application_key,
            application_secret_key=settings.ok_application_secret_key.get_secret_value(),
            tokens={settings.ok_access_token.get_secret_value(): settings.ok_rps},
            application_id=settings.ok_application_id,
        ),
    )


def main(argv: Sequence[str] | None = None) -> None:
    defaults = SimulatorSettings()
    parser = argparse.ArgumentParser(
        prog="python -m services.simulator",
        description=(
            "A simulated social network speaking the VK API (/method/<name>, execute "
            "included) and the OK API (/fb.do, signed), with a JSON control API under "
            "/_control for tests and the demo. Credentials and limits come from "
            "SIMULATOR_* environment variables (see docs/simulator.md)."
        ),
    )
    parser.add_argument("--host", default=defaults.host, help="address to listen on")
    parser.add_argument("--port", type=int, default=defaults.port, help="port to listen on")
    parser.add_argument(
        "--seed-demo",
        action="store_true",
        default=defaults.seed_demo,
        help="start with a demo VK group and a demo OK group full of activity",
    )
    parser.add_argument(
        "--vk-user-rps", type=int, default=defaults.vk_user_rps, help="VK user-token limit"
    )
    parser.add_argument(
        "--vk-group-rps", type=int, default=defaults.vk_group_rps, help="VK group-token limit"
    )
    args = parser.parse_args(argv)
    settings = defaults.model_copy(
        update={
            "host": args.host,
            "port": args.port,
            "seed_demo": args.seed_demo,
            "vk_user_rps": args.vk_user_rps,
            "vk_group_rps": args.vk_group_rps,
        }
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    web.run_app(create_app(build(settings)), host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()

"""``python -m services.simulator serve --port 8081``: the simulated VK and OK APIs."""

from __future__ import annotations

from typing import Annotated

import typer
from aiohttp import web

from services.runtime.skeleton import configure_logging, load_settings, service_cli
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


simulator_app = service_cli(
    "simulator",
    "A simulated social network speaking the VK API (/method/<name>, execute included) "
    "and the OK API (/fb.do, signed), the identity providers (VK ID, OK OAuth, Apple), "
    "and a JSON control API under /_control for tests and the demo.",
)


@simulator_app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (SIMULATOR_HOST).")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (SIMULATOR_PORT, 8081).")
    ] = None,
    seed_demo: Annotated[
        bool | None,
        typer.Option(
            "--seed-demo/--no-seed-demo",
            help="Start with a demo VK group and a demo OK group full of activity.",
        ),
    ] = None,
    vk_user_rps: Annotated[int | None, typer.Option(help="VK user-token limit (0: none).")] = None,
    vk_group_rps: Annotated[int | None, typer.Option(help="VK group-token limit.")] = None,
) -> None:
    """Serve until Ctrl-C. Credentials and limits come from SIMULATOR_* (docs/simulator.md);
    an option given here wins over its variable."""
    given = {
        "host": host,
        "port": port,
        "seed_demo": seed_demo,
        "vk_user_rps": vk_user_rps,
        "vk_group_rps": vk_group_rps,
    }
    settings = load_settings(SimulatorSettings, **{k: v for k, v in given.items() if v is not None})
    configure_logging()
    web.run_app(create_app(build(settings)), host=settings.host, port=settings.port)


simulator_app(prog_name="python -m services.simulator")

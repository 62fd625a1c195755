"""``python -m services.link`` (also ``social-loyalty link ...``).

Settings come from the environment: ``LINK_*`` (see ``settings.py``) and the shared
``KAFKA_*``, ``DATABASE_URL``, ``TOPIC_PREFIX``, ``ACCESS_*``.
"""

from __future__ import annotations

import asyncio
import logging

from services.runtime.skeleton import LogLevel, service_cli, start

link_app = service_cli(
    "link", "Link and sign in with verified social profiles (VK ID, OK, Sign in with Apple)."
)


@link_app.command()
def serve(loglevel: LogLevel = "info") -> None:
    """Serve the link API (and /healthz /readyz /metrics, port 8085) until SIGTERM/SIGINT.

    Reads LINK_DB_SCHEMA (default link), LINK_HTTP_HOST, LINK_HTTP_PORT,
    LINK_ACK_TIMEOUT_S and the identity providers (LINK_IDENTITY__VK__CLIENT_ID, ...;
    docs/link.md).
    """
    from prometheus_client import REGISTRY

    from services.link.link_api import create_link_app
    from services.link.settings import LinkSettings
    from services.runtime.httpapi import start_api
    from services.runtime.skeleton import load_settings, stop_event

    start(loglevel)
    settings = load_settings(LinkSettings)

    async def main() -> None:
        stop = stop_event()
        server = await start_api(
            create_link_app(settings, REGISTRY), settings.http_host, settings.http_port
        )
        logging.getLogger(__name__).info(
            "link API on %s:%d", settings.http_host, settings.http_port
        )
        await stop.wait()
        await server.stop()

    asyncio.run(main())


def main() -> None:
    link_app()

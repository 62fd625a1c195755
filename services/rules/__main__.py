"""``python -m services.rules``: the rules worker and the offers HTTP API."""

from __future__ import annotations

import asyncio
import logging
import signal

import typer

app = typer.Typer(
    name="rules",
    help="The rules service: evaluates offers on social.events (worker) and manages them (api).",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def worker(
    loglevel: str = typer.Option("info", help="Faust/Python log level."),
) -> None:
    """Run the Faust worker: social.events -> loyalty.commands.* (exits cleanly on SIGTERM).

    Settings: RULES_* (app id, PG schema, time zone, store rocksdb:// or memory://),
    KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, TOPIC_PREFIX, TOPIC_PARTITIONS.
    """
    import faust
    from aiohttp import web

    from services.rules.app import create_app
    from services.rules.settings import RulesSettings
    from services.runtime import http

    settings = RulesSettings()
    rules = create_app(settings)

    @rules.task  # type: ignore[untyped-decorator]
    async def quiet_client_logs() -> None:
        """aiokafka and Faust log every send at DEBUG; even filtered out later, building
        those records cost ~60 us per message, a fifth of the worker's time."""
        level = max(logging.getLevelName(loglevel.upper()), logging.INFO)
        for name in ("aiokafka", "faust", "mode"):
            logging.getLogger(name).setLevel(level)

    if settings.worker_http_port:

        @rules.task  # type: ignore[untyped-decorator]
        async def serve_health() -> None:
            offer_set = rules.rules_offer_set  # type: ignore[attr-defined]

            def ready() -> str | None:
                return None if offer_set.signature is not None else "offers not loaded"

            async def loaded(_: web.Request) -> web.Response:
                return web.json_response(
                    [{"id": o.id, "version": o.version} for o in offer_set.offers]
                )

            health = http.create_app("rules", ready)
            health.router.add_get("/offers", loaded)  # what this worker evaluates right now
            await http.start(health, settings.api_host, settings.worker_http_port)

    faust.Worker(rules, loglevel=loglevel.upper()).execute_from_commandline()


@app.command()
def api(
    host: str | None = typer.Option(None, help="Bind address (default RULES_API_HOST)."),
    port: int | None = typer.Option(None, help="Port (default RULES_API_PORT, 8084)."),
) -> None:
    """Serve the offers HTTP API with /healthz /readyz /metrics (default port 8084)."""
    from services.rules.api import create_app
    from services.rules.settings import RulesSettings
    from services.rules.store import OfferStore
    from services.runtime import http

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = RulesSettings()
    store = OfferStore(settings.database, settings.db_schema)
    store.migrate()

    async def serve() -> None:
        runner = await http.start(
            create_app(store), host or settings.api_host, port or settings.api_port
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        logging.info("offers API on %s:%s", host or settings.api_host, port or settings.api_port)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())


@app.command()
def bench(
    events: int = typer.Option(20_000, help="Events to evaluate."),
    members: int = typer.Option(1_000, help="Members they are spread over."),
) -> None:
    """Print the pure engine's events/s with the acceptance set (no Kafka, no PG)."""
    from services.rules.bench import run

    run(events, members, typer.echo)


if __name__ == "__main__":
    app()

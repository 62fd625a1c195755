"""``python -m services.rules``: the rules worker and the offers HTTP API."""

from __future__ import annotations

import asyncio
import logging

import typer

from services.runtime.skeleton import LogLevel, load_settings, on_signals, service_cli, start

app = service_cli(
    "rules",
    "The rules service: evaluates offers on social.events (worker) and manages them (api).",
)


@app.command()
def worker(loglevel: LogLevel = "info") -> None:
    """Run the rules worker: social.events -> loyalty.commands.*, exactly once.

    Settings: RULES_* (app id = consumer group, instance id, PG schema, time zone,
    commit interval), KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, TOPIC_PREFIX,
    TOPIC_PARTITIONS. Exits 0 on SIGTERM/SIGINT after committing; 75 when the loop
    cannot go on now but a new process would (a transaction that cannot be aborted, a
    restore that does not finish); 1 for anything else (a supervisor restarts it).
    """
    from aiohttp import web

    from services.rules.settings import RulesSettings
    from services.rules.worker import RulesWorker, loaded_offers
    from services.runtime import http
    from services.runtime.checkpoint import exit_code, exit_process_on_restart

    start(loglevel)
    exit_process_on_restart()
    settings = load_settings(RulesSettings)
    rules = RulesWorker(settings)

    async def offers(_: web.Request) -> web.Response:
        return web.json_response(loaded_offers(rules))

    health = http.create_app("rules", rules.not_ready)
    health.router.add_get("/offers", offers)  # what this worker evaluates right now
    server = http.serve_in_thread(health, settings.api_host, settings.worker_http_port)

    on_signals(rules.stop)
    try:
        rules.run()
    except Exception as exc:
        logging.getLogger("services.rules").exception("rules worker stopped")
        raise typer.Exit(exit_code(exc)) from None
    finally:
        server.stop()


@app.command()
def api(
    host: str | None = typer.Option(None, help="Bind address (default RULES_API_HOST)."),
    port: int | None = typer.Option(None, help="Port (default RULES_API_PORT, 8084)."),
) -> None:
    """Serve the offers HTTP API with /healthz /readyz /metrics (default port 8084)."""
    from services.rules.offer_store import OfferStore
    from services.rules.offers_api import create_app
    from services.rules.settings import RulesSettings
    from services.runtime import httpapi
    from services.runtime.skeleton import stop_event

    start()
    settings = load_settings(RulesSettings)
    store = OfferStore(settings.database, settings.db_schema)
    store.migrate()

    async def serve() -> None:
        server = await httpapi.start_api(
            create_app(store, settings), host or settings.api_host, port or settings.api_port
        )
        stop = stop_event()
        logging.info("offers API on %s:%s", host or settings.api_host, port or settings.api_port)
        await stop.wait()
        await server.stop()

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

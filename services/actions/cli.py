"""``python -m services.actions run|sinks`` (and ``social-loyalty ledger balance``)."""

from __future__ import annotations

import threading
from typing import Annotated

import typer

from services.actions.service import CONSUMERS
from services.runtime.skeleton import LogLevel, load_settings, on_signals, service_cli, start

app = service_cli(
    "actions",
    "The actions service: bonus ledger, notifications, mailing and counters, "
    "exactly once in effect. Settings: ACTIONS_* plus KAFKA_*, DATABASE_URL, TOPIC_PREFIX.",
)


@app.command()
def run(
    only: Annotated[
        str | None,
        typer.Option(help=f"Comma-separated subset of {','.join(CONSUMERS)} (default: all)."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Read API port (ACTIONS_PORT, 8086).")] = None,
    loglevel: LogLevel = "info",
) -> None:
    """Run the consumers (one thread each) and the read API until SIGTERM/SIGINT."""
    from services.actions.service import run as run_service
    from services.actions.settings import ActionsSettings
    from services.runtime.checkpoint import exit_process_on_restart
    from services.runtime.db import DatabaseUnavailableError
    from services.runtime.kafka import KafkaUnavailableError

    start(loglevel)
    exit_process_on_restart()
    chosen = [part.strip() for part in (only or ",".join(CONSUMERS)).split(",") if part.strip()]
    unknown = [name for name in chosen if name not in CONSUMERS]
    if unknown or not chosen:
        raise typer.BadParameter(f"--only takes {', '.join(CONSUMERS)}; got {only!r}")
    settings = load_settings(ActionsSettings, **({} if port is None else {"port": port}))
    stop = threading.Event()
    on_signals(stop.set)
    try:
        code = run_service(settings, chosen, stop=stop)
    except (KafkaUnavailableError, DatabaseUnavailableError) as exc:  # a refused login
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    raise typer.Exit(code)


@app.command()
def sinks(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    smtp_port: Annotated[int, typer.Option(help="SMTP port.")] = 8025,
    http_port: Annotated[int, typer.Option(help="HTTP provider port.")] = 8087,
) -> None:
    """Local SMTP and HTTP provider sinks that record every message (demo, tests)."""
    from services.actions.sinks import Sinks, run_forever

    start()
    stop = threading.Event()
    on_signals(stop.set)
    typer.echo(
        f"sinks: smtp {host}:{smtp_port}, http http://{host}:{http_port} (GET /messages, /counts)"
    )
    run_forever(Sinks(host, smtp_port, http_port), stop)


def main() -> None:
    app()

"""The ``social-loyalty`` command line: one entry for operators.

Sub-commands are added by the services (topics, replay, lag, ...)."""

from __future__ import annotations

import typer

from services.actions.deadletters import deadletters_app
from services.collector.cli import collector_app
from services.contracts.cli import topics_app
from services.detector.cli import detector_app
from services.lagmonitor.cli import lag_app
from services.ops.kafka_access_cli import kafka_access_app
from services.rules.cli import offers_app, replay
from services.runtime.access.cli import credentials_app

app = typer.Typer(
    name="social-loyalty",
    help="Operate social-loyalty: topics, offers, replay, lag, dead letters.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(topics_app, name="topics")
app.add_typer(lag_app, name="lag")
app.add_typer(deadletters_app, name="deadletters")
app.add_typer(collector_app, name="collector")
app.add_typer(offers_app, name="offers")
app.add_typer(detector_app, name="detector")
app.add_typer(kafka_access_app, name="kafka-access")
app.add_typer(credentials_app, name="credentials")
app.command("replay")(replay)


@app.callback()
def _root() -> None:
    """Operate social-loyalty. Settings come from the environment (KAFKA_*, DATABASE_URL)."""


@app.command()
def check() -> None:
    """Check that Kafka and PostgreSQL answer (uses KAFKA_* and DATABASE_URL)."""
    from services.runtime import kafka
    from services.runtime.db import DatabaseUnavailableError, connect
    from services.runtime.settings import DatabaseSettings, KafkaSettings

    try:
        kafka_settings = KafkaSettings()
        kafka.check_reachable(kafka_settings)
        typer.echo(f"kafka: ok ({kafka_settings.bootstrap_servers})")
        with connect(DatabaseSettings()) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        typer.echo(f"postgres: ok (server {version[0] if version else '?'})")
    except (kafka.KafkaUnavailableError, DatabaseUnavailableError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""The ``social-loyalty`` command line: one entry for operators.

Sub-commands are added by the services (topics, replay, lag, ...). What every command
shares is decided here once: the global ``--bootstrap-server`` / ``--database-url`` /
``--prefix`` (they override the environment the sub-commands' settings read), quiet
Kafka clients that give up within seconds, and one line with exit code 2 instead of a
traceback when a server does not answer or a setting is bad."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from services.actions.deadletters import deadletters_app
from services.collector.cli import collector_app
from services.detector.cli import detector_app
from services.lagmonitor.cli import lag_app
from services.link.cli import link_app
from services.ops.kafka_access_cli import kafka_access_app
from services.ops.topics_cli import topics_app
from services.readmodel.cli import readmodel_app
from services.rules.cli import offers_app, replay
from services.runtime.access.cli import credentials_app
from services.runtime.terminal import operator_error

EXIT_UNAVAILABLE = 2
"""A server did not answer or a setting is bad: the same code click uses for bad usage."""

CLI_CONNECT_TIMEOUT_S = "5"
"""How long a command waits for Kafka unless KAFKA_CONNECT_TIMEOUT_S says otherwise."""


class OperatorGroup(TyperGroup):
    """The root command: a failure an operator can fix (Kafka or PostgreSQL down, a bad
    setting) ends any sub-command with one line on stderr and exit code 2; anything
    else (a bug) keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except Exception as exc:
            line = operator_error(exc)
            if line is None:
                raise
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(EXIT_UNAVAILABLE) from None


app = typer.Typer(
    name="social-loyalty",
    cls=OperatorGroup,
    help="Operate social-loyalty: topics, offers, replay, lag, dead letters.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(topics_app, name="topics")
app.add_typer(lag_app, name="lag")
app.add_typer(deadletters_app, name="deadletters")
app.add_typer(collector_app, name="collector")
app.add_typer(link_app, name="link")
app.add_typer(offers_app, name="offers")
app.add_typer(detector_app, name="detector")
app.add_typer(readmodel_app, name="readmodel")
app.add_typer(kafka_access_app, name="kafka-access")
app.add_typer(credentials_app, name="credentials")
app.command("replay")(replay)


def _version(value: bool) -> None:
    if value:
        try:
            typer.echo(f"social-loyalty {version('social-loyalty')}")
        except PackageNotFoundError:
            typer.echo("social-loyalty (not installed: pip install -e .)")
        raise typer.Exit()


def _override(name: str, value: str | None, nested: str) -> None:
    """Set ``name`` and every service-specific spelling of it (e.g. ``nested`` =
    ``_KAFKA__BOOTSTRAP_SERVERS`` covers ``RULES_KAFKA__BOOTSTRAP_SERVERS``), so the
    option wins over whatever the environment says, for every sub-command."""
    if value is None:
        return
    os.environ[name] = value
    for key in [k for k in os.environ if k.endswith(nested)]:
        os.environ[key] = value


@app.callback()
def _root(
    ctx: typer.Context,
    bootstrap_server: Annotated[
        str | None,
        typer.Option(
            "--bootstrap-server",
            metavar="HOST:PORT",
            help="Kafka to use (overrides KAFKA_BOOTSTRAP_SERVERS).",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", metavar="URL", help="PostgreSQL to use (overrides DATABASE_URL)."
        ),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            metavar="PREFIX",
            help="Topic namespace, e.g. 'demo.' (overrides TOPIC_PREFIX).",
        ),
    ] = None,
    _show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Operate social-loyalty. Settings come from the environment (KAFKA_*, DATABASE_URL,
    TOPIC_PREFIX); the options below override it for every command. Commands that change
    anything print their target on stderr first. A server that does not answer ends a
    command with one line and exit code 2."""
    from services.runtime import kafka

    saved = dict(os.environ)
    ctx.call_on_close(lambda: _restore(saved))
    _override("KAFKA_BOOTSTRAP_SERVERS", bootstrap_server, "_KAFKA__BOOTSTRAP_SERVERS")
    _override("DATABASE_URL", database_url, "_DATABASE__DATABASE_URL")
    _override("TOPIC_PREFIX", prefix, "_TOPICS__PREFIX")
    os.environ.setdefault("KAFKA_CONNECT_TIMEOUT_S", CLI_CONNECT_TIMEOUT_S)
    kafka.for_command_line(True)


def _restore(environ: dict[str, str]) -> None:
    """Undo the overrides when the command ends (matters when it runs in-process)."""
    from services.runtime import kafka

    os.environ.clear()
    os.environ.update(environ)
    kafka.for_command_line(False)


@app.command()
def check() -> None:
    """Check that Kafka and PostgreSQL answer (exit 2 with the reason when one does not)."""
    from services.runtime import kafka
    from services.runtime.db import connect
    from services.runtime.settings import DatabaseSettings, KafkaSettings

    kafka_settings = KafkaSettings()
    kafka.check_reachable(kafka_settings)
    typer.echo(f"kafka: ok ({kafka_settings.bootstrap_servers})")
    with connect(DatabaseSettings()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    typer.echo(f"postgres: ok (server {row[0] if row else '?'})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

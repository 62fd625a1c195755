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

ENVIRON_KEY = "social_loyalty.environ"
"""Where the root command keeps the environment as it found it (``ctx.meta``)."""

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
    help="Operate social-loyalty: topics, offers, replay, lag, dead letters.\n\n"
    "Namespace (topic prefix and consumer groups, database): `use demo` picks the demo's "
    "for later commands, `use` says what is in effect, `use default` goes back. Each "
    "setting, first match wins: --prefix / --database-url, then TOPIC_PREFIX / "
    "DATABASE_URL from your environment (not what ./run copies from stack.env), then the "
    "chosen context, then the default. Prefix and database go together: when a flag or "
    "your environment names either, the context `use` saved supplies neither (only "
    "--context NAME fills in the other). While a saved context applies, every command "
    "says so in one line on stderr. A listing that finds nothing says what it searched "
    "and where such data exists.",
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
    from services.ops import cli_context

    if value is not None:
        cli_context.override(os.environ, name, value, nested)


ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context",
        metavar="NAME",
        help="Namespace for this command only (default: the one `use` chose, else 'default').",
    ),
]


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
            "--database-url",
            metavar="URL",
            help="PostgreSQL to use (overrides DATABASE_URL and the context).",
        ),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            metavar="PREFIX",
            help="Topic namespace, e.g. 'demo.' (overrides TOPIC_PREFIX and the context).",
        ),
    ] = None,
    context: ContextOption = None,
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
    command with one line and exit code 2. The namespace (``use``, ``--context``) is
    decided here once, by ``services.ops.cli_context.resolve``, for every command."""
    from services.ops import cli_context
    from services.runtime import kafka, terminal

    saved = dict(os.environ)
    ctx.call_on_close(lambda: _restore(saved))
    path = cli_context.contexts_path(os.environ)
    try:
        contexts = cli_context.load(path)
        target = cli_context.resolve(
            environ=os.environ,
            stack=cli_context.read_stack_env(os.environ),
            saved=contexts,
            context_flag=context,
            prefix_flag=prefix,
            database_flag=database_url,
        )
    except cli_context.ContextError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    ctx.obj = target
    ctx.meta[ENVIRON_KEY] = saved
    _override("KAFKA_BOOTSTRAP_SERVERS", bootstrap_server, "_KAFKA__BOOTSTRAP_SERVERS")
    _override("DATABASE_URL", database_url, "_DATABASE__DATABASE_URL")
    _override("TOPIC_PREFIX", prefix, "_TOPICS__PREFIX")
    cli_context.apply(target, os.environ)
    terminal.name_context(cli_context.in_effect(target, path))
    note = cli_context.notice(target, path)
    if note is not None and ctx.invoked_subcommand != "use":  # use says it on stdout
        typer.echo(note, err=True)
    os.environ.setdefault("KAFKA_CONNECT_TIMEOUT_S", CLI_CONNECT_TIMEOUT_S)
    kafka.for_command_line(True)


def _restore(environ: dict[str, str]) -> None:
    """Undo the overrides when the command ends (matters when it runs in-process)."""
    from services.runtime import kafka, terminal

    os.environ.clear()
    os.environ.update(environ)
    kafka.for_command_line(False)
    terminal.name_context(None)


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


@app.command()
def use(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Argument(help="default, demo, bench, or one defined with --prefix/--database."),
    ] = None,
    prefix: Annotated[
        str | None,
        typer.Option("--prefix", metavar="PREFIX", help="Define NAME: its topic prefix."),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database", metavar="DBNAME", help="Define NAME: its database on the stack's server."
        ),
    ] = None,
) -> None:
    """Pick the namespace later commands work on, as kubectl picks a context.

    Saved in deploy/.local/cli-contexts.json ($SL_STACK_DIR's; SL_CLI_CONTEXTS names
    another file). Without NAME: which context is in effect and where each setting
    comes from. Built in: default (prefix '', the stack's database), demo ('demo.',
    social_loyalty_demo), bench ('bench.', social_loyalty_bench). A flag or your own
    TOPIC_PREFIX / DATABASE_URL (or a service's spelling, RULES_DATABASE__DATABASE_URL)
    sets the saved context aside: prefix and database go together, so it then supplies
    neither (--context NAME does)."""
    from services.ops import cli_context

    path = cli_context.contexts_path(os.environ)
    if name is None:
        _say_target(ctx.obj, cli_context.load(path), path)
        return
    try:
        chosen = cli_context.choose(cli_context.load(path), name, prefix, database)
    except cli_context.ContextError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    cli_context.save(path, chosen)
    picked = chosen.all()[name]
    database_said = picked.database or "the stack's database"
    typer.echo(
        f"using context {name}: topics under {picked.prefix!r}, consumer groups under "
        f"{cli_context.group_prefix(picked.prefix)!r}, database {database_said} ({path})"
    )
    # The next command, without flags: does the operator's environment still override?
    target = cli_context.resolve(
        environ=ctx.meta[ENVIRON_KEY], stack=cli_context.read_stack_env(os.environ), saved=chosen
    )
    if target.set_aside is not None:
        given = ", ".join(g.removeprefix("$") for g in target.given)
        typer.echo(
            f"note: {given} in your environment sets the context aside (prefix and database "
            f"go together): unset it, or give --context {name}",
            err=True,
        )


def _say_target(target: Any, saved: Any, path: Any) -> None:
    """What ``use`` without a name prints: the context and each setting's source."""
    from services.runtime.terminal import hide_password

    chosen = {"use": f"chosen with `use`, {path}", "--context": "--context"}
    why = chosen.get(target.context_source, "default")
    if target.set_aside is not None:
        why = f"{target.set_aside}, chosen with `use`, not applied: {', '.join(target.given)} given"
    typer.echo(f"context: {target.context.name} ({why})")
    typer.echo(f"topic prefix: {target.prefix.value!r} ({target.prefix.source})")
    url = hide_password(target.database_url.value)
    typer.echo(f"database: {url} ({target.database_url.source})")
    typer.echo(f"consumer groups: {target.group_prefixes.value!r} ({target.group_prefixes.source})")
    typer.echo(f"contexts: {', '.join(saved.all())}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

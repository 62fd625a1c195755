"""``social-loyalty kafka-access``: the services' Kafka principals and ACLs.

``plan`` shows what the topic catalog asks for; ``apply`` (with the admin login from
``KAFKA_SASL_*``, e.g. the local stack's ``stack.env``) creates the SCRAM users, keeps
their passwords in a mode-600 file (or prints them) and makes the ACLs match."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from services.contracts.topics import TopicSettings
from services.ops import kafka_access
from services.ops.kafka_access import KafkaAccessSettings, SystemNames
from services.runtime import terminal

kafka_access_app = typer.Typer(
    help="Kafka principals (one per service) and their ACLs, from the topic catalog.",
    no_args_is_help=True,
)


def _names() -> SystemNames:
    return SystemNames.for_prefix(TopicSettings().prefix, KafkaAccessSettings().principal_prefix)


@kafka_access_app.command("plan")
def plan_command(
    output: Annotated[str, typer.Option(help="table or json")] = "table",
) -> None:
    """Every ACL the catalog asks for (TOPIC_PREFIX, KAFKA_ACCESS_PRINCIPAL_PREFIX)."""
    grants = kafka_access.plan(_names())
    if output == "json":
        typer.echo(json.dumps([{**asdict(g), "principal": g.principal} for g in grants], indent=1))
        return
    if output != "table":
        raise typer.BadParameter("--output is table or json")
    table = Table("principal", "resource", "name", "pattern", "operation", "why")
    for g in grants:
        table.add_row(g.principal, g.resource, g.name, g.pattern, g.operation, g.why)
    terminal.console().print(table)


@kafka_access_app.command("apply")
def apply_command(
    rotate: Annotated[
        list[str] | None,
        typer.Option(help="Give this service (or user) a new password; repeatable."),
    ] = None,
    passwords_file: Annotated[
        Path | None,
        typer.Option(
            help="Where the passwords are kept (default $SL_STACK_DIR/kafka-principals.json)."
        ),
    ] = None,
    print_passwords: Annotated[
        bool, typer.Option("--print", help="Print the passwords instead of keeping them in a file.")
    ] = False,
) -> None:
    """Create the SCRAM users and the ACLs; idempotent. Needs an admin login (KAFKA_SASL_*).
    A KAFKA_ACCESS_PASSWORD_<SERVICE> variable sets that service's password."""
    from services.runtime import kafka
    from services.runtime.settings import KafkaSettings

    settings = KafkaSettings()
    try:
        kafka.check_reachable(settings)
    except kafka.KafkaUnavailableError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    names = _names()
    path = None if print_passwords else passwords_file or KafkaAccessSettings().passwords_path()
    passwords, done = kafka_access.provision(
        kafka.admin(settings, "kafka-access"),
        names,
        passwords_file=path,
        rotate=rotate or (),
        given=kafka_access.passwords_from_env(),
    )
    for line in done:
        typer.echo(line)
    if path is not None:
        typer.echo(f"passwords of {len(passwords)} users in {path} (mode 600)")
    else:
        for service, password in passwords.items():
            typer.echo(f"{names.user(service)}\t{password}")

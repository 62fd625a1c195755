"""``social-loyalty credentials``: make, list and revoke the APIs' service credentials.

The database is ``DATABASE_URL``, the schema ``ACCESS_DB_SCHEMA`` (default ``access``),
the same the APIs read. ``create`` prints the secret once; only its public half is
stored, so a lost secret is replaced (create a new one, revoke the old), not recovered.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from services.runtime.access import credential_store
from services.runtime.access.signing import SCOPES, CredentialError, check_scopes
from services.runtime.db import DatabaseUnavailableError, connect
from services.runtime.settings import AccessSettings, DatabaseSettings

credentials_app = typer.Typer(
    help="Service credentials for the HTTP APIs (Ed25519 keys with scopes).",
    no_args_is_help=True,
)

Output = Annotated[str, typer.Option(help="table or json")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(2)


def _check_output(output: str) -> None:
    if output not in ("table", "json"):
        raise _fail("--output is table or json")


def _connection(schema: str) -> Any:
    try:
        conn = connect(DatabaseSettings())
    except DatabaseUnavailableError as exc:
        raise _fail(str(exc)) from None
    credential_store.migrate(conn, schema)
    return conn


@credentials_app.command("create")
def create_command(
    name: Annotated[str, typer.Option(help="Who uses it, e.g. personal-account.")],
    scope: Annotated[list[str], typer.Option(help=f"Repeatable; one of {', '.join(SCOPES)}.")],
    output: Output = "table",
) -> None:
    """Make a credential and print its secret: the only time it is shown."""
    _check_output(output)
    try:
        check_scopes(scope)
        name = credential_store.check_name(name)
    except CredentialError as exc:
        raise _fail(str(exc)) from None
    schema = AccessSettings().db_schema
    with _connection(schema) as conn:
        made, secret = credential_store.create(conn, schema, name, scope)
    if output == "json":
        typer.echo(json.dumps({**made.public(), "secret": secret}, indent=1))
        return
    typer.echo(f"key id:  {made.key_id}")
    typer.echo(f"name:    {made.name}")
    typer.echo(f"scopes:  {' '.join(made.scopes)}")
    typer.echo(f"secret:  {secret}")
    typer.echo("Keep the secret now: it is not stored and cannot be shown again.", err=True)


@credentials_app.command("list")
def list_command(output: Output = "table") -> None:
    """Every credential: key id, name, scopes, created, revoked (never a secret)."""
    _check_output(output)
    schema = AccessSettings().db_schema
    with _connection(schema) as conn:
        found = credential_store.list_all(conn, schema)
    if output == "json":
        typer.echo(json.dumps([c.public() for c in found], indent=1))
        return
    table = Table("key id", "name", "scopes", "created", "revoked")
    for c in found:
        table.add_row(
            c.key_id,
            c.name,
            " ".join(c.scopes),
            c.created_at.isoformat(timespec="seconds"),
            c.revoked_at.isoformat(timespec="seconds") if c.revoked_at else "",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=10_000)
    console.print(table, overflow="ignore", crop=False)


@credentials_app.command("revoke")
def revoke_command(
    key_id: Annotated[str, typer.Argument(help="The key id (credentials list).")],
) -> None:
    """Revoke a credential: from now on its requests answer 401."""
    schema = AccessSettings().db_schema
    with _connection(schema) as conn:
        done = credential_store.revoke(conn, schema, key_id)
    if done is None:
        raise _fail(f"no credential {key_id!r}")
    assert done.revoked_at is not None
    typer.echo(f"revoked {done.key_id} ({done.name}) at {done.revoked_at.isoformat()}")

"""What the operator's command line prints, decided once for every sub-command: tables
that are never cut when piped, ``--output json``, the target a changing command works
on, and one line (what, why, what to do) for a failure an operator can fix.

``services/cli.py`` wires these into the root command; sub-commands only call them.
"""

from __future__ import annotations

import json
import os
import re
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console

PIPE_WIDTH = 10_000
"""Columns a piped table may take: wide enough that no cell is cut or wrapped."""


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table (for people) or json (for scripts)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Same as --output json.")]


def wants_json(output: OutputFormat, as_json: bool = False) -> bool:
    return as_json or output is OutputFormat.json


def emit_json(document: Any) -> None:
    """One JSON document on stdout: datetimes as ISO 8601, nothing else printed."""
    typer.echo(json.dumps(document, indent=2, default=_jsonable, ensure_ascii=False))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def console(*, stderr: bool = False, highlight: bool = True) -> Console:
    """A rich console for tables and progress lines. On a terminal it wraps to the
    terminal; piped into a file, ``less`` or ``grep`` it is as wide as the widest row, so
    no id or status is cut to ``eco-like-bon…`` and no line is wrapped (rich's default
    for a pipe is 80 columns)."""
    probe = Console(stderr=stderr, highlight=highlight)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, width=PIPE_WIDTH, no_color=True, highlight=False)


# -- the target of a changing command ---------------------------------------------


def hide_password(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


_context: str | None = None


def name_context(label: str | None) -> None:
    """The non-default CLI context in effect (``demo (deploy/.local/cli-contexts.json)``),
    set by services.cli for the command; the target line names it."""
    global _context  # noqa: PLW0603  (one command per process, set by services.cli)
    _context = label


def target_line(*, kafka: bool = True, database: bool = True, prefix: bool = True) -> str:
    """Where a command is about to make changes, from the same settings it will use, and
    the context that chose them when it is not the default."""
    from services.runtime.settings import DatabaseSettings, KafkaSettings

    parts = []
    if kafka:
        settings = KafkaSettings()
        who = f" as {settings.sasl_username}" if settings.sasl_username else ""
        parts.append(f"kafka {settings.bootstrap_servers} ({settings.security_protocol}{who})")
    if database:
        url = DatabaseSettings().database_url.get_secret_value()
        parts.append(f"database {hide_password(url)}")
    if prefix:
        parts.append(f"prefix {os.environ.get('TOPIC_PREFIX', '')!r}")
    if _context is not None:
        parts.append(f"context {_context}")
    return "target: " + ", ".join(parts)


def announce_target(*, kafka: bool = True, database: bool = True, prefix: bool = True) -> None:
    """Print the target on stderr before a command changes anything, so an operator who
    pointed it at the wrong cluster or database sees so first (stdout stays for data)."""
    typer.echo(target_line(kafka=kafka, database=database, prefix=prefix), err=True)


# -- one line for a failure an operator can fix -------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def operator_error(exc: BaseException) -> str | None:
    """The line to print for a server that does not answer or a bad setting, or None
    for anything else (a bug keeps its traceback). Follows ``raise ... from`` chains,
    so a wrapped ``KafkaUnavailableError`` is still recognised."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        line = _describe(current)
        if line is not None:
            return _one_line(line)
        current = current.__cause__ or current.__context__
    return None


def _describe(exc: BaseException) -> str | None:  # noqa: PLR0911  (one case per type)
    from confluent_kafka import KafkaError, KafkaException
    from pydantic import ValidationError

    from services.runtime.db import DatabaseUnavailableError
    from services.runtime.kafka import KafkaUnavailableError

    if isinstance(exc, KafkaUnavailableError | DatabaseUnavailableError):
        return str(exc)
    if type(exc).__name__ == "KafkaUnreachableError":  # the lag monitor's sampler
        return f"Kafka unreachable: {exc}. Check KAFKA_BOOTSTRAP_SERVERS or --bootstrap-server."
    if isinstance(exc, KafkaException):
        err = exc.args[0] if exc.args else None
        reason = err.str() if isinstance(err, KafkaError) else str(exc)
        return (
            f"Kafka request failed ({reason}). Check that the cluster answers and that "
            "KAFKA_* (address, SASL user) are right: `social-loyalty check`."
        )
    if isinstance(exc, ValidationError):
        return _bad_setting(exc)
    if type(exc).__module__.startswith("psycopg") and "connection info" in str(exc):
        return (
            f"bad setting DATABASE_URL: {str(exc).strip()}. Give a libpq URI "
            "(postgresql://user@host:port/database) in DATABASE_URL or --database-url."
        )
    try:
        import httpx
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, httpx.TransportError | httpx.HTTPStatusError):
        try:
            url = str(exc.request.url)
        except RuntimeError:  # an error raised before a request was made
            url = "the server"
        return f"{url} did not answer ({exc}). Check the URL, or that the service runs."
    return None


def _bad_setting(exc: Any) -> str:
    problems = []
    for error in exc.errors()[:3]:
        field = ".".join(str(part) for part in error.get("loc", ())) or "?"
        env = _env_name(exc.title, field)
        problems.append(f"{env or field}: {error.get('msg', 'invalid')}")
    return (
        f"bad setting ({exc.title}): {'; '.join(problems)}. Fix the environment variable "
        "(or the global option) and run again."
    )


def _env_name(model: str, field: str) -> str | None:
    """The environment variable a settings field is read from, when it can be told."""
    from pydantic_settings import BaseSettings

    stack: list[type[Any]] = [BaseSettings]
    while stack:
        cls = stack.pop()
        if cls.__name__ == model and "." not in field:
            prefix = cls.model_config.get("env_prefix", "") or ""
            return f"{prefix}{field}".upper()
        stack.extend(cls.__subclasses__())
    return None

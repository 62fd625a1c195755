"""The skeleton every process of the system is built on.

A service's ``cli.py`` makes its command line with :func:`service_cli`, and each
command that runs a process calls :func:`start` (Kafka clients that log and wait as
services do, one log format), builds its settings with :func:`load_settings` (a bad
setting is one line and exit code 2, not a traceback) and stops on SIGTERM/SIGINT
through :func:`on_signals` or :func:`stop_event`. Health, readiness and metrics come
from ``services.runtime.http.create_app`` (aiohttp workers) or
``services.runtime.httpapi.create_api`` (FastAPI edges), each with the registry the
service passes in, on which every part builds its metrics as a
``services.runtime.metric_set.MetricSet`` (no module-level metrics); settings classes
are ``class XSettings(ServiceSettings, BaseSettings)`` (``services.runtime.settings``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from services.runtime import kafka
from services.runtime.terminal import operator_error

LOG_FORMAT = "%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"
EXIT_BAD_SETTINGS = 2
"""A setting is wrong: the same code click uses for bad usage."""

S = TypeVar("S")

LogLevel = Annotated[
    str, typer.Option("--loglevel", help="Python log level: debug, info, warning, error.")
]


def service_cli(name: str, help: str) -> typer.Typer:
    """The command line of one service: ``python -m services.<name> --help`` lists its
    commands (always a group, so ``python -m services.<name> <command>`` works however
    many commands it has)."""
    app = typer.Typer(name=name, help=help, no_args_is_help=True, add_completion=False)
    app.callback()(lambda: None)
    return app


def start(loglevel: str = "info") -> None:
    """Make this process a service: its Kafka clients log and wait (they do not give up
    within seconds as the operator's commands do), and it logs in the one format."""
    kafka.for_command_line(False)
    configure_logging(loglevel)


def configure_logging(loglevel: str = "info") -> None:
    """The one log format, on stderr (services and the operator's long commands)."""
    logging.basicConfig(level=loglevel.upper(), format=LOG_FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise


def load_settings(cls: Callable[..., S], **overrides: object) -> S:
    """The service's settings from the environment, or one line and exit code 2."""
    try:
        return cls(**overrides)
    except (ValidationError, ValueError) as exc:
        line = operator_error(exc) or f"bad settings: {exc}"
        typer.echo(f"error: {line}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from exc


def on_signals(stop: Callable[[], None]) -> None:
    """Call ``stop`` on SIGTERM and SIGINT (for a process whose loop runs in the main
    thread and polls a stop flag)."""

    def handler(signum: int, _frame: object) -> None:
        logging.getLogger(__name__).info("signal %d: stopping", signum)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def stop_event() -> asyncio.Event:
    """An event set on SIGTERM and SIGINT, for a process run by ``asyncio.run``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop

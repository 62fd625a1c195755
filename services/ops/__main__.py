"""``python -m services.ops``: run the whole system locally under the supervisor.

``up`` creates missing topics, starts every service (logs in ``--log-dir``, one
file each), restarts any that dies, and stops them all on Ctrl-C or SIGTERM.
``status`` asks each service's ``/readyz``. Unlike the demo, ``up`` keeps the
environment's names (``TOPIC_PREFIX``, ``DATABASE_URL``) and state.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.table import Table

from services.contracts.topics import TopicSettings, catalog, ensure
from services.ops import kafka_access
from services.ops.kafka_access import KafkaAccessSettings
from services.ops.supervisor import ServiceFailedError, ServiceSpec, Supervisor
from services.ops.system import (
    WORKERS_HELP,
    Ports,
    app_stem,
    groups_at,
    service_specs,
    workers_option,
)
from services.runtime import kafka, terminal
from services.runtime.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
# Piped into a file or CI, one line per message, never wrapped at 80 columns.
console = terminal.console(highlight=False)
app = typer.Typer(
    name="ops", help="Run every service locally under a supervisor.", no_args_is_help=True
)

GroupsOption = Annotated[
    Path, typer.Option(help="The collector's groups file.", exists=True, dir_okay=False)
]


def _specs(
    groups: Path,
    simulator: bool,
    state_dir: Path,
    kafka_logins: dict[str, tuple[str, str]] | None = None,
    workers: dict[str, int] | None = None,
) -> list[ServiceSpec]:
    topics = TopicSettings()
    ports = Ports.from_env()
    return service_specs(
        prefix=topics.prefix,
        state_dir=state_dir,
        groups_file=groups_at(groups, ports, state_dir),
        simulator=simulator,
        kafka_logins=kafka_logins,
        ports=ports,
        workers=workers,
    )


@app.command()
def up(
    groups: GroupsOption = ROOT / "deploy" / "groups.example.yaml",
    simulator: Annotated[
        bool, typer.Option(help="Also run the simulated VK/OK on 8081 (the example groups use it).")
    ] = True,
    state_dir: Annotated[
        Path, typer.Option(help="Logs and the Faust workers' local stores.")
    ] = ROOT / "deploy" / ".local" / "services",
    workers: Annotated[str | None, typer.Option(help=WORKERS_HELP, metavar="SERVICE=N,...")] = None,
) -> None:
    """Start every service, keep them running, stop them all on Ctrl-C."""
    counts = workers_option(workers)
    settings = KafkaSettings()
    try:
        kafka.check_reachable(settings)
    except kafka.KafkaUnavailableError as exc:
        console.print(f"[red]{exc}[/]\nStart the stack with ./run stack start.")
        raise typer.Exit(1) from exc
    admin = kafka.admin(settings, "ops")
    topics = TopicSettings()
    stem = app_stem(topics.prefix)
    specs = catalog(topics, rules_app_id=f"{stem}.rules", detector_app_id=f"{stem}.detector")
    for line in ensure(admin, specs, fix=False):
        console.print(f"topics: {line}")
    # Each service as its own principal; passwords kept (mode 600) in the stack dir.
    logins = kafka_access.system_logins(
        settings, topics.prefix, passwords_file=KafkaAccessSettings().passwords_path()
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    logs = state_dir / "logs"
    services = _specs(groups, simulator, state_dir, logins, counts)
    with Supervisor(services, logs, on_event=console.print) as sup:
        try:
            sup.start_all()
            console.print(
                f"[bold]all services ready[/]; logs in {logs}; dashboard "
                f"http://127.0.0.1:{Ports.from_env().lagmonitor}/ ; Ctrl-C stops them"
            )
            sup.watch()  # revives any service that dies, until stop_all on the way out
            while not stop.wait(1.0):  # a timed wait, so Ctrl-C gets through
                pass
        except KeyboardInterrupt:
            console.print("stopping...")
        except ServiceFailedError as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(1) from exc


@app.command()
def status(
    groups: GroupsOption = ROOT / "deploy" / "groups.example.yaml",
) -> None:
    """Ask every service's readiness endpoint; exit 1 if any is not ready.

    It only asks: it writes nothing, so it works before ``up`` ever ran (no state
    directory yet) and whatever ``SL_PORT_OFFSET`` says."""
    try:
        ports = Ports.from_env()
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    table = Table("service", "ready", "url")
    healthy, answered = True, False
    for spec in service_specs(
        prefix=TopicSettings().prefix,
        state_dir=ROOT / "deploy" / ".local" / "services",
        groups_file=groups,  # the URLs asked do not depend on it: no moved copy written
        simulator=True,
        ports=ports,
    ):
        if spec.ready_url is None:
            continue
        try:
            answer = httpx.get(spec.ready_url, timeout=2)
            state = "yes" if answer.status_code == 200 else f"no ({answer.status_code})"
            answered = True
        except httpx.HTTPError as exc:
            state = f"no ({type(exc).__name__})"
        healthy &= state == "yes"
        table.add_row(spec.name, state, spec.ready_url)
    console.print(table)
    if not answered:
        offset = ports.simulator - Ports().simulator
        moved = f" with SL_PORT_OFFSET={offset}" if offset else ""
        console.print(
            f"no service answers{moved}: start them with ./run up "
            "(python -m services.ops up) with the same SL_PORT_OFFSET"
        )
    if not healthy:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()

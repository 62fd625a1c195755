"""``python -m services.collector``: the scheduler, one-off runs, run history.

Also mounted as ``social-loyalty collector ...``. Settings come from the
environment (``COLLECTOR_*``, ``KAFKA_*``, ``DATABASE_URL``, ``TOPIC_PREFIX``);
groups from a YAML file (``--groups`` or ``COLLECTOR_GROUPS_FILE``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from services.collector.groups import GroupsFile, GroupsFileError, load_groups
from services.collector.settings import CollectorSettings
from services.runtime import terminal
from services.runtime.skeleton import (
    LogLevel,
    configure_logging,
    load_settings,
    service_cli,
    start,
    stop_event,
)

collector_app = service_cli(
    "collector",
    "Collect VK/OK groups into social.snapshots (one Kafka transaction per run).",
)

GroupsOption = Annotated[
    Path | None,
    typer.Option(
        "--groups",
        help="YAML file of groups (see deploy/groups.example.yaml); "
        "default: COLLECTOR_GROUPS_FILE.",
    ),
]


def _settings() -> CollectorSettings:
    return load_settings(CollectorSettings)


def _groups(settings: CollectorSettings, path: Path | None) -> GroupsFile:
    path = path or settings.groups_file
    if path is None:
        typer.echo("error: give --groups FILE or set COLLECTOR_GROUPS_FILE", err=True)
        raise typer.Exit(2)
    try:
        return load_groups(path)
    except GroupsFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


async def _prepare(settings: CollectorSettings) -> Any:
    from services.collector.publish import SnapshotPublisher
    from services.collector.run import Collector
    from services.collector.store import connect, migrate
    from services.contracts.codec import make_codec
    from services.contracts.topics import SNAPSHOTS

    conn = await connect(settings.database)
    try:
        await migrate(conn, settings.db_schema)
    finally:
        await conn.close()
    publisher = SnapshotPublisher(
        settings.kafka,
        make_codec(settings.kafka),
        settings.topics.name(SNAPSHOTS),
        transactional_id_prefix=settings.transactional_id_prefix,
        max_message_bytes=settings.max_message_bytes,
        transaction_timeout_s=settings.transaction_timeout_s,
    )
    return Collector(settings, publisher)


@collector_app.command()
def run(groups: GroupsOption = None, loglevel: LogLevel = "info") -> None:
    """Run every group at its interval until SIGTERM/SIGINT; /healthz /readyz /metrics
    on COLLECTOR_HTTP_PORT (8082). /readyz is 503 while PostgreSQL (the run history)
    or the brokers (where a run is published) do not answer."""
    start(loglevel)
    settings = _settings()
    config = _groups(settings, groups)

    async def main() -> None:
        from services.collector.scheduler import Scheduler
        from services.runtime import health, http

        collector = await _prepare(settings)
        stop = stop_event()
        dependencies = health.Dependencies(
            health.probes(database=settings.database, kafka_settings=settings.kafka)
        ).start()
        server = await http.start(
            http.create_app("collector", dependencies.not_ready),
            settings.http_host,
            settings.http_port,
        )
        logging.getLogger(__name__).info(
            "collecting %d groups; health and metrics on %s:%d",
            len(config.groups),
            settings.http_host,
            settings.http_port,
        )
        try:
            scheduler = Scheduler(
                collector.run_group, config.groups, max_concurrent=settings.max_concurrent_runs
            )
            await scheduler.run(stop, grace_s=settings.shutdown_grace_s)
        finally:
            await server.cleanup()
            dependencies.stop()
            collector.publisher.close()

    asyncio.run(main())


@collector_app.command()
def collect(
    group: Annotated[str, typer.Argument(help="NETWORK:GROUP_ID, e.g. vk:1001")],
    groups: GroupsOption = None,
    allow_mass_leave: Annotated[
        bool,
        typer.Option(
            "--allow-mass-leave",
            help="Publish even if the member count fell by more than COLLECTOR_MAX_MEMBER_DROP "
            "since the last succeeded run: members really left (check the group first).",
        ),
    ] = False,
) -> None:
    """Collect one group now, publish the run, and print a summary (exit 1 unless it succeeded)."""
    configure_logging()
    settings = _settings()
    config = _groups(settings, groups)
    try:
        target = config.find(group)
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from exc
    if allow_mass_leave:
        target = target.model_copy(update={"allow_mass_leave": True})
    terminal.announce_target()

    async def main() -> Any:
        from services.collector.store import GroupBusyError

        collector = await _prepare(settings)
        try:
            return await collector.run_group(target)
        except GroupBusyError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        finally:
            collector.publisher.close()

    summary = asyncio.run(main())
    table = Table(title=f"run {summary.run_id}", show_header=False)
    for name, value in (
        ("group", summary.group),
        ("status", summary.status),
        ("baseline", "yes" if summary.baseline else "no"),
        ("members", summary.members),
        ("posts", summary.posts),
        ("skipped objects", summary.skipped),
        ("messages published", summary.messages),
        ("API requests", summary.api_requests),
        ("objects read", summary.objects_read),
        ("errors by code", dict(summary.errors_by_code) or "-"),
        ("duration", f"{summary.duration_s:.2f}s"),
        ("reason", summary.reason or "-"),
    ):
        table.add_row(name, str(value))
    terminal.console().print(table)
    if summary.status != "succeeded":
        raise typer.Exit(1)


RUN_COLUMNS = (
    "run",
    "group",
    "started",
    "took",
    "status",
    "members",
    "msgs",
    "API req",
    "errors",
    "skipped",
    "reason",
)


def run_cells(row: dict[str, Any]) -> list[str]:
    """One run as the table shows it; every cell whole (a terminal folds long ones)."""
    took = (
        f"{(row['ended_at'] - row['started_at']).total_seconds():.1f}s" if row["ended_at"] else "-"
    )
    return [
        row["run_id"],
        f"{row['network']}:{row['group_id']}",
        row["started_at"].strftime("%Y-%m-%d %H:%M:%S"),
        took,
        row["status"],
        str(row["members"] if row["members"] is not None else "-"),
        str(row["messages_published"]),
        str(row["api_requests"]),
        ",".join(f"{k}x{v}" for k, v in row["errors_by_code"].items()) or "-",
        str(len(row["skipped"])),
        row["reason"] or "",
    ]


def run_record(row: dict[str, Any]) -> dict[str, Any]:
    """One run for ``--output json``: the table's fields, as data (times in ISO 8601)."""
    took = (row["ended_at"] - row["started_at"]).total_seconds() if row["ended_at"] else None
    return {
        "run": row["run_id"],
        "group": f"{row['network']}:{row['group_id']}",
        "network": row["network"],
        "group_id": row["group_id"],
        "started_at": row["started_at"].isoformat(),
        "ended_at": row["ended_at"].isoformat() if row["ended_at"] else None,
        "took_s": took,
        "status": row["status"],
        "members": row["members"],
        "messages_published": row["messages_published"],
        "api_requests": row["api_requests"],
        "errors_by_code": dict(row["errors_by_code"]),
        "skipped": len(row["skipped"]),
        "reason": row["reason"],
    }


@collector_app.command()
def runs(
    limit: Annotated[int, typer.Option(help="How many runs to show.")] = 20,
    group: Annotated[str | None, typer.Option(help="Only this NETWORK:GROUP_ID.")] = None,
    output: terminal.OutputOption = terminal.OutputFormat.table,
    as_json: terminal.JsonFlag = False,
) -> None:
    """Show the recent run history (from PostgreSQL)."""
    settings = _settings()
    network: str | None = None
    group_id: int | None = None
    if group:
        try:
            network, raw_id = group.split(":", 1)
            group_id = int(raw_id)
        except ValueError as exc:
            typer.echo("error: --group takes NETWORK:GROUP_ID, e.g. vk:1001", err=True)
            raise typer.Exit(2) from exc

    async def main() -> list[dict[str, Any]]:
        from services.collector.store import RunStore, connect, migrate

        conn = await connect(settings.database)
        try:
            await migrate(conn, settings.db_schema)
            return await RunStore(conn, settings.db_schema).recent(limit, network, group_id)
        finally:
            await conn.close()

    rows = asyncio.run(main())
    if terminal.wants_json(output, as_json):
        terminal.emit_json([run_record(row) for row in rows])
        return
    if not rows:
        from services.ops.namespace_search import empty_rows_line

        url = settings.database.database_url.get_secret_value()
        what = f"collector runs of {group}" if group else "collector runs"
        typer.echo(empty_rows_line(url, settings.db_schema, "runs", what))
        return
    table = Table(title=f"collector runs ({settings.db_schema})")
    for column in RUN_COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*run_cells(row))
    terminal.console().print(table)


def main() -> None:
    collector_app()

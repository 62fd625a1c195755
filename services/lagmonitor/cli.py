"""``social-loyalty lag ...``: the lag table in a terminal, and the monitor's server.

The lead mounts this with ``app.add_typer(lag_app, name="lag")``;
``python -m services.lagmonitor`` runs it alone.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from services.runtime.skeleton import service_cli
from services.runtime.terminal import OutputFormat, OutputOption, emit_json, wants_json

lag_app = service_cli(
    "lag", "Consumer-group lag: offset lag, time lag and Burrow status per partition."
)

STATUS_STYLE = {
    "OK": "green",
    "WARN": "yellow",
    "REWIND": "magenta",
    "STALL": "dark_orange",
    "STOP": "red",
    "ERR": "bold red",
}


def _fmt_seconds(value: float | None, kind: str | None = None) -> str:
    """Seconds for people; ``>=`` marks a lower bound (an idle topic gives no rate)."""
    if value is None:
        return "-"
    if kind == "lower_bound":
        return ">=" + _fmt_seconds(value)
    if kind == "extrapolated":
        return "~" + _fmt_seconds(value)
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _fmt(value: int | None) -> str:
    return "-" if value is None else str(value)


def _status(value: str) -> Text:
    return Text(value, style=STATUS_STYLE.get(value, ""))


GROUP_COLUMNS = ("GROUP", "REPLAY", "STATE", "MEMBERS", "LAG", "TIME-LAG", "STATUS")
PARTITION_COLUMNS = (
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "TIME-LAG",
    "STATUS",
)
_LEFT = {"GROUP", "TOPIC", "REPLAY", "STATE", "STATUS"}


def table_rows(document: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """The cells of both tables, as strings: one row per group, one per partition
    (the partition rows carry the columns ``kafka-consumer-groups --describe`` prints)."""
    groups: list[list[str]] = []
    partitions: list[list[str]] = []
    for group in document["groups"]:
        groups.append(
            [
                group["group"],
                "yes" if group["replay"] else "no",
                group["state"],
                str(group["members"]),
                # No partition with a committed offset: no lag to speak of, not 0.
                str(group["total_lag"])
                if any(p["lag"] is not None for p in group["partitions"])
                else "-",
                _fmt_seconds(group["max_time_lag_s"]),
                group["status"],
            ]
        )
        if not group["partitions"]:
            # No committed offset and nothing assigned (a group whose members left
            # before committing): Kafka's tool prints "-" for what is not known.
            partitions.append([group["group"], "-", "-", "-", "-", "-", "-", group["status"]])
        partitions.extend(
            [
                group["group"],
                p["topic"],
                str(p["partition"]),
                _fmt(p["committed_offset"]),
                _fmt(p["end_offset"]),
                _fmt(p["lag"]),
                _fmt_seconds(p["time_lag_s"], p["time_lag_kind"]),
                p["status"],
            ]
            for p in group["partitions"]
        )
    return groups, partitions


def _widths(columns: tuple[str, ...], rows: list[list[str]]) -> list[int]:
    return [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]


def boxed_width(document: dict[str, Any]) -> int:
    """Columns a terminal needs to show the boxed tables without cutting a cell."""
    tables = zip((GROUP_COLUMNS, PARTITION_COLUMNS), table_rows(document), strict=True)
    return max(sum(_widths(c, r)) + 3 * len(c) + 1 + 11 for c, r in tables)


def render_plain(document: dict[str, Any]) -> str:
    """Both tables as aligned plain text, never wrapped or cut: what a pipe, a log or
    a script gets (``awk '$6 > 1000'`` works, as on Kafka's tool)."""
    blocks = []
    for columns, rows in zip((GROUP_COLUMNS, PARTITION_COLUMNS), table_rows(document), strict=True):
        widths = _widths(columns, rows)
        lines = []
        for cells in (list(columns), *rows):
            padded = (
                cell.ljust(w) if name in _LEFT else cell.rjust(w)
                for name, cell, w in zip(columns, cells, widths, strict=True)
            )
            lines.append("  ".join(padded).rstrip())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_tables(document: dict[str, Any]) -> tuple[Table, Table]:
    """The same two tables for a terminal: status in colour, replay groups marked."""
    group_rows, partition_rows = table_rows(document)
    groups = Table(title="groups", title_justify="left", header_style="bold")
    for name in GROUP_COLUMNS:
        if name != "REPLAY":
            groups.add_column(
                name,
                justify="left" if name in _LEFT else "right",
                overflow="fold" if name == "GROUP" else "ellipsis",
                no_wrap=name != "GROUP",
            )
    for row in group_rows:
        name = row[0] + (" (replay)" if row[1] == "yes" else "")
        groups.add_row(name, *row[2:-1], _status(row[-1]))
    partitions = Table(title="partitions", title_justify="left", header_style="bold")
    for name in PARTITION_COLUMNS:
        partitions.add_column(
            name,
            justify="left" if name in _LEFT else "right",
            overflow="fold",
            no_wrap=name not in {"GROUP", "TOPIC"},
        )
    for row in partition_rows:
        partitions.add_row(*row[:-1], _status(row[-1]))
    return groups, partitions


def _sample_document(
    prefixes: list[str] | None, all_groups: bool, samples: int, pause_s: float
) -> dict[str, Any]:
    from services.lagmonitor.core import MonitorState, evaluate, snapshot_to_json
    from services.lagmonitor.monitor import eval_config
    from services.lagmonitor.sampler import Sampler
    from services.lagmonitor.settings import LagMonitorSettings

    overrides: dict[str, Any] = {"all_groups": True} if all_groups else {}
    if prefixes:
        overrides["group_prefixes"] = tuple(prefixes)
    settings = LagMonitorSettings(**overrides)
    sampler = Sampler(settings)
    config = eval_config(settings)
    state = MonitorState()
    snapshot = None
    for i in range(samples):
        if i:
            time.sleep(pause_s)
        state, snapshot = evaluate(state, sampler.sample(), config)
    assert snapshot is not None
    return snapshot_to_json(snapshot)


def _fetch_document(url: str) -> dict[str, Any]:
    import httpx

    response = httpx.get(url.rstrip("/") + "/api/lag", timeout=10)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


@lag_app.command("show")
def show(
    *,
    group: Annotated[
        list[str] | None,
        typer.Option("--group", "-g", help="Only groups starting with this (repeatable)."),
    ] = None,
    all_groups: Annotated[
        bool, typer.Option("--all", help="Every group on the cluster, not only ours.")
    ] = False,
    output: OutputOption = OutputFormat.table,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --output json.")] = False,
    url: Annotated[
        str | None,
        typer.Option(
            help="Read from a running monitor (e.g. http://127.0.0.1:9308): its time lag "
            "and status rest on minutes of samples, not on this command's few seconds."
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option(min=1, help="Samples to take when reading Kafka directly.")
    ] = 2,
    pause: Annotated[float, typer.Option(help="Seconds between those samples.")] = 1.0,
    plain: Annotated[
        bool,
        typer.Option(help="Aligned plain text (the default when the output is not a terminal)."),
    ] = False,
) -> None:
    """Print committed offset, end offset, lag, time lag and status per partition.

    Offset lag is what `kafka-consumer-groups --describe` prints as LAG; a group without
    committed offsets shows `-` there, as that tool does. Time lag needs samples over
    time: `~` is extrapolated, `>=` a lower bound; pass --url to read a running
    monitor's longer view. `--output json` prints the /api/lag document (every column
    of the tables, plus owner and earliest offset per partition).
    """
    from services.runtime.kafka import check_reachable

    if url:
        document = _fetch_document(url)
        if group:
            document["groups"] = [
                g for g in document["groups"] if any(g["group"].startswith(p) for p in group)
            ]
    else:
        from services.lagmonitor.settings import LagMonitorSettings

        check_reachable(LagMonitorSettings().kafka)
        document = _sample_document(group, all_groups, samples, pause)
    if wants_json(output, as_json):
        emit_json(document)
        return
    if not document["groups"]:
        from services.ops.namespace_search import empty_groups_line

        typer.echo(empty_groups_line(group, all_groups, url))
        return
    console = Console()
    # Boxed tables squeezed into a narrow terminal fold every name into a column of
    # letters; plain lines that the terminal wraps stay readable.
    if plain or not console.is_terminal or console.width < boxed_width(document):
        typer.echo(render_plain(document))
        return
    for table in render_tables(document):
        console.print(table)


@lag_app.command("serve")
def serve(
    *,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port for /metrics, /api/lag and the page (env LAGMONITOR_PORT, default 9308)."
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            min=0.1, help="Seconds between samples (env LAGMONITOR_SAMPLE_INTERVAL_S, default 5)."
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (env LAGMONITOR_HOST, default 127.0.0.1).")
    ] = None,
    all_groups: Annotated[bool, typer.Option("--all", help="Watch every group.")] = False,
) -> None:
    """Run the monitor: sample every INTERVAL seconds and serve the results.

    Options override the LAGMONITOR_* environment (docs/operations.md), which a
    supervisor or a container sets; LAGMONITOR_SERVICES adds service throughput.
    """
    from aiohttp import web

    from services.lagmonitor.monitor import LagMonitor
    from services.lagmonitor.settings import LagMonitorSettings
    from services.lagmonitor.web import create_app
    from services.runtime.skeleton import load_settings, start

    start()
    given = {"port": port, "sample_interval_s": interval, "host": host}
    update: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if all_groups:
        update["all_groups"] = True
    settings = load_settings(LagMonitorSettings, **update)
    app = create_app(LagMonitor(settings))
    web.run_app(app, host=settings.host, port=settings.port, shutdown_timeout=5)


def main() -> None:
    lag_app()


if __name__ == "__main__":
    main()

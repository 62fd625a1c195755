"""The CLI's table and the settings the monitor reads from the environment."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rich.console import Console
from typer.testing import CliRunner

from services.lagmonitor.cli import PARTITION_COLUMNS, lag_app, render_plain, render_tables
from services.lagmonitor.core import (
    ClusterSample,
    GroupObservation,
    MonitorState,
    evaluate,
    snapshot_to_json,
)
from services.lagmonitor.monitor import eval_config
from services.lagmonitor.settings import LagMonitorSettings


def test_table_shows_the_tools_columns_and_every_partition() -> None:
    sample = ClusterSample(
        time=1.0,
        groups=(
            GroupObservation(
                "social-loyalty.rules.replay.o1",
                state="Empty",
                committed={("social.events", 0): 5, ("social.events", 1): 0},
            ),
        ),
        end_offsets={("social.events", 0): 10, ("social.events", 1): 7},
    )
    _, snapshot = evaluate(MonitorState(), sample, eval_config(LagMonitorSettings()))
    console = Console(width=200, record=True)
    for table in render_tables(snapshot_to_json(snapshot)):
        console.print(table)
    text = console.export_text()
    for header in ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"):
        assert header in text
    assert "social-loyalty.rules.replay.o1 (replay)" in text
    rows = [line.split("│") for line in text.splitlines() if "social.events" in line]
    cells = [[c.strip() for c in row if c.strip()] for row in rows]
    assert [c[2:6] for c in cells] == [["0", "5", "10", "5"], ["1", "0", "7", "7"]]


def test_help_lists_show_and_serve() -> None:
    result = CliRunner().invoke(lag_app, ["--help"])
    assert result.exit_code == 0
    assert "show" in result.output and "serve" in result.output


def test_module_runs_as_a_program() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.lagmonitor", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "everyone:9092")
    monkeypatch.setenv("LAGMONITOR_GROUP_PREFIXES", "social-loyalty, billing")
    monkeypatch.setenv("LAGMONITOR_SAMPLE_INTERVAL_S", "2")
    monkeypatch.setenv("LAGMONITOR_WINDOW_SIZE", "4")
    settings = LagMonitorSettings()
    assert settings.kafka.bootstrap_servers == "everyone:9092"
    assert settings.group_prefixes == ("social-loyalty", "billing")
    assert settings.stop_after_s == 8.0
    monkeypatch.setenv("LAGMONITOR_KAFKA__BOOTSTRAP_SERVERS", "only-me:9092")
    assert LagMonitorSettings().kafka.bootstrap_servers == "only-me:9092"


def test_defaults_watch_the_systems_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAGMONITOR_GROUP_PREFIXES", raising=False)
    settings = LagMonitorSettings()
    assert settings.group_prefixes == ("social-loyalty",)
    assert (settings.port, settings.sample_interval_s, settings.all_groups) == (9308, 5.0, False)


def test_a_window_of_one_is_refused() -> None:
    with pytest.raises(ValueError, match="window_size"):
        LagMonitorSettings(window_size=1)


def test_plain_table_keeps_whole_names_and_splits_on_whitespace() -> None:
    long_group = "social-loyalty.replay.likes-5-then-1.20261125T140915Z"
    sample = ClusterSample(
        time=1.0,
        groups=(GroupObservation(long_group, committed={("social.events", 0): 5}),),
        end_offsets={("social.events", 0): 1234567},
    )
    _, snapshot = evaluate(MonitorState(), sample, eval_config(LagMonitorSettings()))
    groups, partitions = render_plain(snapshot_to_json(snapshot)).split("\n\n")
    assert groups.splitlines()[1].split() == [
        long_group,
        "yes",
        "Unknown",
        "0",
        "1234562",
        "-",
        "OK",
    ]
    header, row = partitions.splitlines()
    assert header.split() == list(PARTITION_COLUMNS)
    assert PARTITION_COLUMNS[:6] == (
        "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
    )  # fmt: skip
    assert row.split() == [long_group, "social.events", "0", "5", "1234567", "1234562", "-", "OK"]
    # Right-aligned numbers end under their header, as in Kafka's tool.
    assert header.index("LAG") + len("LAG") == row.index("1234562 ") + len("1234562")

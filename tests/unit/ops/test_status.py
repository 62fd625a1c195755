"""``python -m services.ops status`` with ``SL_PORT_OFFSET`` set and no state directory
yet (``up`` never ran): it ended in a ``FileNotFoundError`` traceback while writing the
moved groups file it did not even need. It only asks now, and says what it found."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import services.ops.__main__ as ops
from services.ops.system import Ports, groups_at

OFFSET = 22_931
"""Ports nobody here uses (every moved port stays below Linux's ephemeral range)."""


def test_status_with_a_port_offset_and_no_state_dir_prints_a_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "ROOT", tmp_path)  # no deploy/.local/services under it
    monkeypatch.setenv("SL_PORT_OFFSET", str(OFFSET))
    result = CliRunner().invoke(ops.app, ["status"], env={"COLUMNS": "200"})
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, FileNotFoundError), result.exception
    assert f"http://127.0.0.1:{Ports().link + OFFSET}/readyz" in result.output
    assert "no (ConnectError)" in result.output
    assert f"no service answers with SL_PORT_OFFSET={OFFSET}" in result.output
    assert "./run up" in result.output
    assert not (tmp_path / "deploy").exists(), "status writes nothing"


def test_status_with_a_bad_port_offset_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SL_PORT_OFFSET", "lots")
    result = CliRunner().invoke(ops.app, ["status"])
    assert result.exit_code == 2
    assert "SL_PORT_OFFSET must be a number" in result.output


def test_the_moved_groups_file_creates_its_state_dir(tmp_path: Path) -> None:
    groups = tmp_path / "groups.yaml"
    groups.write_text("url: http://127.0.0.1:8081/vk\n")
    state_dir = tmp_path / "not" / "yet"
    moved = groups_at(groups, Ports(simulator=8081 + OFFSET), state_dir)
    assert moved == state_dir / "groups.yaml"
    assert moved.read_text() == f"url: http://127.0.0.1:{8081 + OFFSET}/vk\n"

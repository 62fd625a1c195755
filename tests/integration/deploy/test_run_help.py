"""``./run demo --help`` (and ``up``, ``bench``) print help without starting the stack."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("command", "expected"), [("demo", "Usage"), ("up", "Usage"), ("bench", "usage")]
)
def test_help_starts_nothing(command: str, expected: str, tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KAFKA_") and k not in {"DATABASE_URL", "SL_STACK_DIR"}
    }
    stack_dir = tmp_path / "stack"
    done = subprocess.run(
        [str(REPO / "run"), command, "--help"],
        env={**env, "SL_STACK_DIR": str(stack_dir)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    assert not stack_dir.exists()  # no stack was started (it would keep its data there)


def test_run_cli_keeps_the_database_the_caller_named(tmp_path: Path) -> None:
    """Only DATABASE_URL set (no KAFKA_BOOTSTRAP_SERVERS): stack.env must not replace it."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KAFKA_") and k not in {"DATABASE_URL", "SL_STACK_DIR"}
    }
    (tmp_path / "stack.env").write_text(
        "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1\n"
        "export DATABASE_URL=postgresql://stack@127.0.0.1:2/from_stack_env\n"
    )
    done = subprocess.run(
        [str(REPO / "run"), "cli", "offers", "list"],
        env={**env, "SL_STACK_DIR": str(tmp_path), "DATABASE_URL": "postgresql://me@127.0.0.1:3/x"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "port 3 failed" in done.stderr
    assert "from_stack_env" not in done.stderr

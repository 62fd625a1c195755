"""``./run``'s help path installs nothing; its first-run path installs .venv and the
Kafka jars side by side, and either failing fails the command.

``run`` runs in a sandbox: a copy of the script alone, with every program it could
install or start with (python3, pip, apt-get, mvn, java, .venv's python) replaced by a
stub that records its command line. What the stubs record is what ``run`` did.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
VERBS = ("demo", "test", "stack", "up", "bench", "cli")

STUB = """#!/bin/sh
name=$(basename "$0")
printf '%s %s\\n' "$name" "$*" >> "$CALLS"
if [ -n "$FAIL" ] && printf '%s' "$*" | grep -qF -- "$FAIL"; then exit 1; fi
if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
echo "$name $*"
"""


@dataclass
class Sandbox:
    root: Path
    calls_file: Path
    env: dict[str, str]

    def run(self, *args: str, fail: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.root / "run"), *args],
            env={**self.env, "FAIL": fail},
            capture_output=True,
            text=True,
            timeout=60,
        )

    @property
    def calls(self) -> list[str]:
        if not self.calls_file.exists():
            return []
        return self.calls_file.read_text().splitlines()


def _stub(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STUB)
    path.chmod(0o755)


def _sandbox(tmp_path: Path, *, with_venv: bool) -> Sandbox:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "run", root / "run")
    bin_dir = tmp_path / "bin"
    for name in ("python3", "pip", "apt-get", "mvn", "java", "sudo"):
        _stub(bin_dir / name)
    if with_venv:
        for name in ("python", "social-loyalty", "ruff", "mypy"):
            _stub(root / ".venv" / "bin" / name)
        (root / ".venv" / ".installed").touch()
        os.utime(root / ".venv" / ".installed", (0, 0))
    # Newer than the install stamp: a path that installs would reinstall here.
    (root / "pyproject.toml").write_text("")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CALLS": str(tmp_path / "calls"),
        "SL_STACK_DIR": str(tmp_path / "stack"),
    }
    return Sandbox(root, tmp_path / "calls", env)


@pytest.mark.parametrize("with_venv", [False, True], ids=["fresh clone", "with .venv"])
@pytest.mark.parametrize("verb", VERBS)
def test_help_installs_and_starts_nothing(verb: str, with_venv: bool, tmp_path: Path) -> None:
    box = _sandbox(tmp_path, with_venv=with_venv)
    done = box.run(verb, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    # Only help was asked of any program: no venv, pip, apt-get, Maven, stack start.
    assert all("--help" in call for call in box.calls), box.calls
    assert (box.root / ".venv").exists() == with_venv
    assert not (tmp_path / "stack").exists()


def test_without_venv_the_help_says_how_to_get_the_options(tmp_path: Path) -> None:
    done = _sandbox(tmp_path, with_venv=False).run("demo", "--help")
    assert "./run demo" in done.stdout
    assert "./run demo --help lists them" in done.stdout


def test_the_sandbox_sees_an_install(tmp_path: Path) -> None:
    """Without --help the same verb builds .venv: the stubs would have told."""
    box = _sandbox(tmp_path, with_venv=False)
    box.run("cli", "topics", "list")
    assert any("-m venv" in call for call in box.calls), box.calls


def test_first_run_fetches_kafka_while_it_builds_the_venv(tmp_path: Path) -> None:
    box = _sandbox(tmp_path, with_venv=False)
    done = box.run("stack", "start")
    assert done.returncode == 0, done.stderr
    calls = box.calls
    fetch = calls.index("python3 deploy/localstack.py fetch-kafka")
    install = calls.index("python -m pip install -q -e .[dev]")
    start = calls.index("python deploy/localstack.py start")
    assert start > max(fetch, install)  # the stack starts once both are in


@pytest.mark.parametrize(
    ("fail", "named"),
    [("fetch-kafka", "the Kafka jars"), (".[dev]", "the Python environment")],
)
def test_either_install_failing_fails_the_command(fail: str, named: str, tmp_path: Path) -> None:
    box = _sandbox(tmp_path, with_venv=False)
    done = box.run("stack", "start", fail=fail)
    assert done.returncode == 1
    assert f"could not install: {named}" in done.stderr
    calls = box.calls
    # The other install ran to its end; nothing was started.
    assert "python3 deploy/localstack.py fetch-kafka" in calls
    assert "python -m pip install -q -e .[dev]" in calls
    assert not any("localstack.py start" in call for call in calls)


def test_an_external_kafka_fetches_no_jars(tmp_path: Path) -> None:
    box = _sandbox(tmp_path, with_venv=False)
    box.env["KAFKA_BOOTSTRAP_SERVERS"] = "kafka.example:9092"
    done = box.run("stack", "start")
    assert done.returncode == 0, done.stderr
    assert not any("fetch-kafka" in call for call in box.calls)

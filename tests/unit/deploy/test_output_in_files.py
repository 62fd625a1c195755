"""What ends up in a file or CI's log is plain: ``--help`` with every option name
whole, lines never wrapped at 80 columns, no colour codes (Maven's included)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import typer

from deploy import localstack
from services.ops.supervisor import ServiceSpec, Supervisor

REPO = Path(__file__).resolve().parents[3]
LONG = "a log line longer than any terminal " + "x" * 120


def _plain_env() -> dict[str, str]:
    """The caller's environment without what decides the width or rich: as in CI."""
    drop = {"COLUMNS", "LINES", "TYPER_USE_RICH", "TERMINAL_WIDTH", "FORCE_COLOR"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _option_names(app: typer.Typer) -> list[str]:
    command = typer.main.get_command(app)
    names = [n for p in command.params for n in (*p.opts, *p.secondary_opts)]
    names += list(getattr(command, "commands", {}))
    return names


def _run_help(*args: str) -> str:
    if not (REPO / ".venv" / "bin" / "python").exists():
        pytest.skip("./run's help comes from .venv, which this checkout has not built")
    done = subprocess.run(
        [str(REPO / "run"), *args, "--help"],
        env=_plain_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout and "\x1b" not in done.stdout, done.stdout
    return done.stdout


def test_demo_help_shows_every_option_whole_and_the_command_people_type() -> None:
    from services.demo.__main__ import cli

    out = _run_help("demo")
    assert out.startswith("Usage: ./run demo [OPTIONS]")
    missing = [name for name in _option_names(cli()) if name not in out.split()]
    assert missing == []


def test_up_and_cli_help_show_every_name_whole() -> None:
    from services.cli import app
    from services.ops.__main__ import app as ops

    up = typer.main.get_command(ops).commands["up"]  # type: ignore[attr-defined]
    out = _run_help("up")
    words = set(out.split())
    assert [n for p in up.params for n in p.opts if n not in words] == []
    out = _run_help("cli")
    words = {word.rstrip(",") for word in out.split()}
    assert [name for name in _option_names(app) if name not in words] == []


def test_the_demo_console_writes_long_lines_whole_into_a_file(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    with out.open("w") as file:
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from services.demo.__main__ import _rule, console\n"
                f"_rule('[bold]Step 1[/]'); console.print('[bold]{LONG}[/]')",
            ],
            cwd=REPO,
            env=_plain_env(),
            stdout=file,
            check=True,
            timeout=60,
        )
    lines = out.read_text().splitlines()
    assert lines[1] == LONG
    assert len(lines[0]) == 80 and "Step 1" in lines[0]
    assert "\x1b" not in out.read_text()


def test_a_service_log_file_has_whole_lines_and_a_plain_traceback(tmp_path: Path) -> None:
    """A typer program under the supervisor logs a long line and crashes: both stay on
    their lines (rich would box the traceback, wrapped at 80 columns, with its locals)."""
    module = tmp_path / "crashing_service.py"
    module.write_text(
        textwrap.dedent(f"""
        import logging
        import typer
        from services.runtime.skeleton import configure_logging

        app = typer.Typer()

        @app.command()
        def serve() -> None:
            configure_logging()
            logging.getLogger("crashing").info({LONG!r})
            raise RuntimeError({LONG!r})

        app()
        """)
    )
    env = {**_plain_env(), "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"}
    spec = ServiceSpec("crashing", ("crashing_service",))
    log = tmp_path / "logs" / "crashing.log"
    with Supervisor([spec], tmp_path / "logs", env=env) as supervisor:
        supervisor.start("crashing", wait=False)
        deadline = time.monotonic() + 60
        while "RuntimeError" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    text = log.read_text()
    assert f"crashing: {LONG}" in text.splitlines()[2]
    assert f"RuntimeError: {LONG}" in text.splitlines()
    assert "\x1b" not in text
    assert not any(char in text for char in "╭│╰"), text


@pytest.mark.skipif(shutil.which("mvn") is None, reason="no Maven on PATH")
def test_maven_writes_no_colour_codes() -> None:
    """Debian's Maven 3.8 writes ESC[0m before its first line, even in batch mode."""
    done = subprocess.run(
        localstack.maven("-o", "-f", "/nonexistent/pom.xml", "validate"),
        env=localstack.maven_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "[ERROR]" in done.stdout + done.stderr
    assert "\x1b" not in done.stdout + done.stderr


def test_maven_env_keeps_the_callers_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAVEN_OPTS", "-Xmx512m")
    assert localstack.maven_env()["MAVEN_OPTS"] == "-Xmx512m -Djansi.noreset=true"

"""``./run cli`` takes stack.env only for what the caller left unset: an explicit
DATABASE_URL survives even without KAFKA_BOOTSTRAP_SERVERS (an ``offers create`` once
went to the stack's database instead of the one the operator named)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def source_unset(stack_env: Path, **preset: str) -> dict[str, str]:
    """Run the script's ``source_unset`` on ``stack_env`` in a clean bash; the result."""
    function = subprocess.run(
        ["sed", "-n", "/^source_unset() {/,/^}/p", str(REPO / "run")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert function.startswith("source_unset()")
    done = subprocess.run(
        ["bash", "-c", f'{function}\nsource_unset "$1"\nenv', "bash", str(stack_env)],
        env={"PATH": "/usr/bin:/bin", **preset},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def test_stack_env_fills_in_only_what_is_unset(tmp_path: Path) -> None:
    stack_env = tmp_path / "stack.env"
    stack_env.write_text(
        "# written by deploy/localstack.py\n"
        "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092\n"
        "export DATABASE_URL=postgresql://postgres@127.0.0.1:55432/social_loyalty\n"
        "export KAFKA_SASL_PASSWORD='a b'\n"
        "\n"
        "SL_STACK_DIR=/somewhere\n"
    )
    env = source_unset(stack_env, DATABASE_URL="postgresql://me@db.example/prod", TOPIC_PREFIX="")
    assert env["DATABASE_URL"] == "postgresql://me@db.example/prod"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
    assert env["KAFKA_SASL_PASSWORD"] == "a b"
    assert env["SL_STACK_DIR"] == "/somewhere"
    assert env["TOPIC_PREFIX"] == ""  # set, even if empty: kept

    alone = source_unset(stack_env)
    assert alone["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:55432/social_loyalty"

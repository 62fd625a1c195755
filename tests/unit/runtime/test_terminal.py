"""What every CLI command prints: one line for a failure an operator can fix, the
target without its password, tables that are not cut when piped, --version."""

from __future__ import annotations

import json
from importlib.metadata import version

import pytest
from confluent_kafka import KafkaError, KafkaException
from pydantic import ValidationError
from rich.table import Table
from typer.testing import CliRunner

from services.cli import app
from services.runtime.db import DatabaseUnavailableError
from services.runtime.kafka import KafkaUnavailableError
from services.runtime.settings import KafkaSettings
from services.runtime.terminal import (
    console,
    hide_password,
    operator_error,
    target_line,
)

# Every key the root options and the target line read: CliRunner restores them after.
CLEAN_ENV: dict[str, str | None] = {
    "KAFKA_BOOTSTRAP_SERVERS": None,
    "KAFKA_SECURITY_PROTOCOL": None,
    "KAFKA_SASL_USERNAME": None,
    "KAFKA_CONNECT_TIMEOUT_S": None,
    "DATABASE_URL": None,
    "TOPIC_PREFIX": None,
}


def test_known_failures_become_one_line_even_when_wrapped() -> None:
    down = DatabaseUnavailableError("PostgreSQL did not accept a connection (refused\n\tIs it up?)")
    try:
        try:
            raise down
        except DatabaseUnavailableError as exc:
            raise RuntimeError("replay failed") from exc
    except RuntimeError as wrapped:
        line = operator_error(wrapped)
    assert line == "PostgreSQL did not accept a connection (refused Is it up?)"
    assert operator_error(KafkaUnavailableError("Kafka at 'x' did not answer")) is not None
    timeout = KafkaException(KafkaError(KafkaError._TIMED_OUT, "timed out"))
    assert "timed out" in (operator_error(timeout) or "")


def test_a_bug_keeps_its_traceback() -> None:
    assert operator_error(ZeroDivisionError("division by zero")) is None
    assert operator_error(KeyError("x")) is None


def test_a_bad_setting_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "BOGUS")
    with pytest.raises(ValidationError) as caught:
        KafkaSettings()
    line = operator_error(caught.value) or ""
    assert "KAFKA_SECURITY_PROTOCOL" in line
    assert "\n" not in line


def test_target_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        hide_password("postgresql://loyalty:s3cret@db.example:5432/sl")
        == "postgresql://loyalty:***@db.example:5432/sl"
    )
    assert hide_password("postgresql://postgres@127.0.0.1/x") == "postgresql://postgres@127.0.0.1/x"
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:topsecret@127.0.0.1:55432/social_loyalty")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("TOPIC_PREFIX", "demo.")
    line = target_line()
    assert "topsecret" not in line
    assert line == (
        "target: kafka broker:9092 (PLAINTEXT), "
        "database postgresql://u:***@127.0.0.1:55432/social_loyalty, prefix 'demo.'"
    )


def test_piped_table_keeps_every_cell_whole(capsys: pytest.CaptureFixture[str]) -> None:
    long_id = "eco-like-bonus-for-the-autumn-campaign-in-every-group-we-run"
    status = "succeeded-after-three-retries-because-the-api-said-error-6-each-time " * 3
    table = Table("id", "status")
    table.add_row(long_id, status.strip())
    console().print(table)  # pytest's stdout is not a terminal: a pipe
    out = capsys.readouterr().out
    assert long_id in out
    assert status.strip() in out


def test_version_comes_from_the_package() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"social-loyalty {version('social-loyalty')}"


def test_global_options_override_the_environment_for_the_command() -> None:
    env = {**CLEAN_ENV, "KAFKA_BOOTSTRAP_SERVERS": "from-env:9092", "TOPIC_PREFIX": "env."}
    result = CliRunner().invoke(
        app,
        ["--bootstrap-server", "127.0.0.1:1", "--prefix", "opt.", "topics", "list", "-o", "json"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    names = [row["topic"] for row in json.loads(result.stdout)]
    assert names and all(name.startswith("opt.") for name in names)


def test_a_bad_setting_ends_the_command_in_one_line() -> None:
    env = {**CLEAN_ENV, "KAFKA_SECURITY_PROTOCOL": "BOGUS"}
    result = CliRunner().invoke(app, ["deadletters", "list"], env=env)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: bad setting")
    assert "KAFKA_SECURITY_PROTOCOL" in lines[0]


def test_a_database_url_that_is_no_url_ends_the_command_in_one_line() -> None:
    env = {**CLEAN_ENV, "DATABASE_URL": "notaurl"}
    result = CliRunner().invoke(app, ["offers", "list"], env=env)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: bad setting DATABASE_URL: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr

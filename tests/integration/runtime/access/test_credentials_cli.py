"""``social-loyalty credentials``: create prints the secret once, list never shows it
(nor truncates when piped), revoke stops the key; bad input and an unreachable
database are one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from services.cli import app as cli
from services.runtime.access.signing import Secret


@pytest.fixture
def env(database_url: str) -> Iterator[dict[str, str]]:
    schema = f"t_cred_cli_{uuid.uuid4().hex[:8]}"
    yield {"DATABASE_URL": database_url, "ACCESS_DB_SCHEMA": schema}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def test_create_list_revoke(env: dict[str, str]) -> None:
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, ["credentials", *args], env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    made = json.loads(
        run("create", "--name", "pa", "--scope", "signin", "--scope", "links:write", "--output",
            "json")
    )  # fmt: skip
    assert made["scopes"] == ["links:write", "signin"]
    assert Secret.parse(made["secret"]).key_id == made["key_id"]

    long_name = "personal-account " + "x" * 80
    table = run("create", "--name", long_name, "--scope", "ledger:read")
    assert "secret:  sl1." in table
    second = table.split("key id:")[1].split()[0]

    listed = json.loads(run("list", "--output", "json"))
    assert [(c["key_id"], c["name"], c["revoked_at"]) for c in listed] == [
        (made["key_id"], "pa", None),
        (second, long_name, None),
    ]
    assert all("secret" not in c for c in listed)
    assert made["secret"].split(".")[2] not in run("list")

    piped = subprocess.run(
        [sys.executable, "-m", "services.cli", "credentials", "list"],
        env={**os.environ, **env, "COLUMNS": "40"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert long_name in piped.stdout and second in piped.stdout

    assert f"revoked {made['key_id']} (pa)" in run("revoke", made["key_id"])
    after = {c["key_id"]: c for c in json.loads(run("list", "--output", "json"))}
    assert after[made["key_id"]]["revoked_at"] is not None
    assert after[second]["revoked_at"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--name", "x", "--scope", "links:admin"], "unknown scope links:admin"),
        (["create", "--name", " ", "--scope", "signin"], "a name is"),
        (["revoke", "0123456789abcdef"], "no credential"),
        (["list", "--output", "yaml"], "--output is table or json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["credentials", *args], env=env)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr


def test_an_unreachable_database_is_one_line_and_exit_2() -> None:
    env = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    for args in (["list"], ["create", "--name", "x", "--scope", "signin"], ["revoke", "x"]):
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", "credentials", *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().startswith("error: PostgreSQL did not accept"), done.stderr
        assert done.stderr.strip().count("\n") == 0

"""The stack's fault commands refuse anything but the stack's own servers, and the
proxied listener is written only when asked (no broker, no database needed)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from deploy import localstack

REPO = Path(__file__).resolve().parents[3]


def _localstack(stack_dir: Path) -> ModuleType:
    """deploy/localstack.py loaded for a stack directory of the test's own (its paths
    are module constants)."""
    os.environ["SL_STACK_DIR"] = str(stack_dir)
    try:
        spec = importlib.util.spec_from_file_location("localstack_f", REPO / "deploy/localstack.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        del os.environ["SL_STACK_DIR"]
    return module


PRIVATE_ENV = (
    "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:29092\n"
    "export DATABASE_URL=postgresql://postgres@127.0.0.1:29432/social_loyalty\n"
    "export KAFKA_SASL_PASSWORD=x\n"
)


def _stack_dir(tmp_path: Path, stack_env: str) -> Path:
    """A stack directory as ``start`` leaves it, without servers: its stack.env, its
    layout and a (fake) private PostgreSQL data folder."""
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "layout.json").write_text(
        json.dumps({"brokers": 1, "kafka_port": 29092, "controller_port": 29093})
    )
    (tmp_path / "postgres" / "data").mkdir(parents=True)
    (tmp_path / "postgres" / "data" / "PG_VERSION").write_text("16\n")
    (tmp_path / "postgres" / "port").write_text("29432\n")
    (tmp_path / "stack.env").write_text(stack_env)
    return tmp_path


def _run(stack_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = localstack.stack_process_env(stack_dir, env)
    return subprocess.run(
        [sys.executable, str(REPO / "deploy" / "localstack.py"), *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", ["stop-postgres", "start-postgres", "restart-postgres"])
def test_postgres_faults_refuse_an_external_database(tmp_path: Path, command: str) -> None:
    stack = _stack_dir(
        tmp_path,
        PRIVATE_ENV.replace("127.0.0.1:29432/social_loyalty", "db.example:5432/prod"),
    )
    done = _run(stack, command)
    assert done.returncode == 1
    assert "PostgreSQL faults act only on the stack's own cluster" in done.stderr
    assert "db.example:5432" in done.stderr


def test_postgres_faults_refuse_a_database_url_naming_another_server(tmp_path: Path) -> None:
    stack = _stack_dir(tmp_path, PRIVATE_ENV)
    done = _run(stack, "stop-postgres", DATABASE_URL="postgresql://me:secret@127.0.0.1:55432/x")
    assert done.returncode == 1
    assert "not this stack's PostgreSQL" in done.stderr
    assert "secret" not in done.stderr


@pytest.mark.parametrize("command", ["pause-broker", "resume-broker", "kill-broker"])
def test_broker_faults_refuse_another_cluster(tmp_path: Path, command: str) -> None:
    stack = _stack_dir(tmp_path, PRIVATE_ENV)
    done = _run(stack, command, KAFKA_BOOTSTRAP_SERVERS="kafka.example:9092")
    assert done.returncode == 1
    assert "KAFKA_BOOTSTRAP_SERVERS=kafka.example:9092 is not this stack's Kafka" in done.stderr


def test_broker_faults_refuse_a_stack_on_an_external_kafka(tmp_path: Path) -> None:
    stack = _stack_dir(
        tmp_path, "export KAFKA_BOOTSTRAP_SERVERS=kafka.example:9092\nexport DATABASE_URL=x\n"
    )
    done = _run(stack, "pause-broker")
    assert done.returncode == 1
    assert "broker faults act only on the stack's own brokers" in done.stderr


def test_faults_need_a_started_stack(tmp_path: Path) -> None:
    done = _run(tmp_path, "pause-broker", "--node", "1")
    assert done.returncode == 1
    assert "no stack in" in done.stderr


def test_pausing_a_broker_that_is_not_running_says_so(tmp_path: Path) -> None:
    done = _run(_stack_dir(tmp_path, PRIVATE_ENV), "pause-broker")
    assert done.returncode == 1
    assert "kafka: not running, nothing to pause" in done.stderr


def test_the_proxied_listener_is_written_only_when_asked(tmp_path: Path) -> None:
    ls = _localstack(tmp_path)
    ports = ls.Ports(kafka=29092, controller=29093, postgres=29432)
    creds = ls.Credentials(admin="a", controller="c")
    plain = ls.Cluster(ports, brokers=1)
    text = ls.kafka_properties(plain, plain.nodes[0], creds).read_text().splitlines()
    assert "listeners=CLIENT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093" in text
    assert "advertised.listeners=CLIENT://127.0.0.1:29092" in text
    assert not [line for line in text if "PROXIED:" in line or "listener.name.proxied" in line]

    proxy = ls.ProxyPorts.resolve(ports, wanted=True)
    assert proxy == ls.ProxyPorts(api=29102, kafka=29103, kafka_listener=29104, postgres=29105)
    proxied = ls.Cluster(ports, brokers=1, proxy=proxy)
    text = ls.kafka_properties(proxied, proxied.nodes[0], creds).read_text().splitlines()
    for line in (
        "listeners=CLIENT://127.0.0.1:29092,PROXIED://127.0.0.1:29104,CONTROLLER://127.0.0.1:29093",
        "advertised.listeners=CLIENT://127.0.0.1:29092,PROXIED://127.0.0.1:29103",
        "listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,PROXIED:SASL_PLAINTEXT,"
        "CONTROLLER:SASL_PLAINTEXT",
        "listener.name.proxied.sasl.enabled.mechanisms=SCRAM-SHA-512",
    ):
        assert line in text, line


def test_the_proxy_stays_as_started_until_turned_off(tmp_path: Path) -> None:
    ls = _localstack(tmp_path)
    ports = ls.Ports(kafka=29092, controller=29093, postgres=29432)
    assert ls.ProxyPorts.resolve(ports, wanted=None) is None
    ls.KAFKA_DIR.mkdir(parents=True)
    recorded = {"api": 1, "kafka": 2, "kafka_listener": 3, "postgres": 4}
    ls.LAYOUT_FILE.write_text(json.dumps({"brokers": 1, "proxy": recorded}))
    assert ls.ProxyPorts.resolve(ports, wanted=None) == ls.ProxyPorts(**recorded)
    assert ls.ProxyPorts.resolve(ports, wanted=False) is None


def test_a_proxy_on_three_brokers_is_refused(tmp_path: Path) -> None:
    done = _run(tmp_path, "start", "--brokers", "3", "--proxy", SL_KAFKA_PORT="29092")
    assert done.returncode == 1
    assert "--proxy is for a one-node stack" in done.stderr


def test_the_python_functions_ignore_the_callers_stack_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A test process that uses the main stack (its DATABASE_URL, KAFKA_*) drives its own
    private stack: the stack directory's files decide, not the caller's environment."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/social_loyalty")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    monkeypatch.setenv("SL_POSTGRES_PORT", "55432")
    env = localstack.stack_process_env(tmp_path)
    assert env["SL_STACK_DIR"] == str(tmp_path)
    assert not {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SL_POSTGRES_PORT"} & set(env)
    assert env.get("PATH") == os.environ.get("PATH")
    stack = _stack_dir(tmp_path, PRIVATE_ENV)
    with pytest.raises(localstack.StackError, match="nothing to pause"):
        localstack.pause_broker(stack)

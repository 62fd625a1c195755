"""A Kafka cluster of its own for a test or a benchmark, started with deploy/localstack.py.

It lives in a stack directory of its own on free loopback ports and shares the main
stack's PostgreSQL (``DATABASE_URL``) and, when built, its Kafka jars: the
three-broker replication and failover tests and ``bench scaleout`` use it, while the
rest keeps the one-broker stack.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCALSTACK = REPO / "deploy" / "localstack.py"


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(size: int, low: int = 24_000, high: int = 31_000) -> int:
    """The first port of ``size`` consecutive free loopback ports, below Linux's
    ephemeral range (where a client socket could take one between restarts)."""
    for _ in range(200):
        base = random.randrange(low, high - size, 10)
        if all(_free(base + n) for n in range(size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports between {low} and {high}")


@dataclass(frozen=True)
class LocalCluster:
    stack_dir: Path
    env: dict[str, str]
    """What a process needs to use this cluster: ``SL_STACK_DIR``, its ports,
    ``KAFKA_BOOTSTRAP_SERVERS`` and the admin SASL login, ``DATABASE_URL``."""

    @property
    def bootstrap(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    @property
    def admin_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka settings of an admin client of this cluster."""
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": self.env["KAFKA_SECURITY_PROTOCOL"],
            "sasl.mechanism": self.env["KAFKA_SASL_MECHANISM"],
            "sasl.username": self.env["KAFKA_SASL_USERNAME"],
            "sasl.password": self.env["KAFKA_SASL_PASSWORD"],
        }

    def stack(self, *args: str, timeout: float = 300) -> None:
        """``localstack.py <args>`` on this cluster, e.g. ``stack("kill-broker", "2")``."""
        subprocess.run(
            [sys.executable, str(LOCALSTACK), *args],
            env={**os.environ, **self.env},
            check=True,
            timeout=timeout,
        )

    def stop(self) -> None:
        """Stop the brokers (the shared PostgreSQL, external here, is left running)."""
        self.stack("stop", timeout=120)


def start_cluster(stack_dir: Path, database_url: str, brokers: int = 3) -> LocalCluster:
    """Start ``brokers`` KRaft nodes in ``stack_dir`` on free ports; returns once the
    cluster takes transactional produces."""
    base = free_port_block(2 * brokers)
    ports = {
        "SL_STACK_DIR": str(stack_dir),
        "SL_KAFKA_PORT": str(base),
        "SL_KAFKA_CONTROLLER_PORT": str(base + 1),
    }
    main_libs = Path(os.environ.get("SL_STACK_DIR") or REPO / "deploy" / ".local") / "kafka-libs"
    if (main_libs / ".complete").exists():
        ports["SL_KAFKA_LIBS"] = str(main_libs)
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KAFKA_", "SL_KAFKA_")) and key != "SL_STACK_DIR"
    }
    subprocess.run(
        [sys.executable, str(LOCALSTACK), "start", "--brokers", str(brokers)],
        env={**environment, **ports, "DATABASE_URL": database_url},
        check=True,
        timeout=300,
    )
    env = dict(ports)
    for line in (stack_dir / "stack.env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value
    return LocalCluster(stack_dir, env)

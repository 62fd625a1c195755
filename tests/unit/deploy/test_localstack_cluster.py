"""The local cluster's layout: node ports, bootstrap list, replication by size (no broker)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]


def _localstack(stack_dir: Path) -> ModuleType:
    """deploy/localstack.py loaded for a stack directory of the test's own."""
    os.environ["SL_STACK_DIR"] = str(stack_dir)
    try:
        spec = importlib.util.spec_from_file_location("localstack_t", REPO / "deploy/localstack.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        del os.environ["SL_STACK_DIR"]
    return module


def test_three_nodes_listen_two_ports_apart_and_keep_three_replicas(tmp_path: Path) -> None:
    ls = _localstack(tmp_path)
    cluster = ls.Cluster(ls.Ports(kafka=29092, controller=29093, postgres=1), brokers=3)
    assert [(n.id, n.port, n.controller_port) for n in cluster.nodes] == [
        (1, 29092, 29093),
        (2, 29094, 29095),
        (3, 29096, 29097),
    ]
    assert cluster.bootstrap == "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"
    assert cluster.quorum_voters == "1@127.0.0.1:29093,2@127.0.0.1:29095,3@127.0.0.1:29097"
    assert (cluster.replication, cluster.min_insync) == (3, 2)
    assert cluster.nodes[0].dir == ls.KAFKA_DIR  # node 1 where a one-broker stack had it
    assert cluster.nodes[2].dir == ls.KAFKA_DIR / "node-3"
    assert len({n.log_dir for n in cluster.nodes}) == 3


def test_one_node_keeps_one_replica_of_everything(tmp_path: Path) -> None:
    ls = _localstack(tmp_path)
    cluster = ls.Cluster(ls.Ports(kafka=19092, controller=19093, postgres=1), brokers=1)
    assert (cluster.replication, cluster.min_insync) == (1, 1)
    assert cluster.bootstrap == "127.0.0.1:19092"


def test_the_written_properties_replicate_the_internal_topics(tmp_path: Path) -> None:
    ls = _localstack(tmp_path)
    cluster = ls.Cluster(ls.Ports(kafka=29092, controller=29093, postgres=1), brokers=3)
    creds = ls.Credentials(admin="a", controller="c")
    text = ls.kafka_properties(cluster, cluster.nodes[1], creds).read_text()
    for line in (
        "node.id=2",
        "offsets.topic.replication.factor=3",
        "transaction.state.log.replication.factor=3",
        "transaction.state.log.min.isr=2",
        "min.insync.replicas=2",
        "default.replication.factor=3",
        "listeners=CLIENT://127.0.0.1:29094,CONTROLLER://127.0.0.1:29095",
    ):
        assert line in text.splitlines(), line


def test_a_formatted_stack_refuses_another_size(tmp_path: Path) -> None:
    ls = _localstack(tmp_path)
    ls.KAFKA_DIR.mkdir(parents=True)
    ls.LAYOUT_FILE.write_text('{"brokers": 1, "kafka_port": 19092, "controller_port": 19093}')
    assert ls.cluster_size(None) == 1
    with pytest.raises(ls.StackError, match="formatted for 1 broker"):
        ls.cluster_size(3)
    with pytest.raises(ls.StackError, match="between 1 and"):
        ls.cluster_size(0)


def test_kill_broker_takes_a_node_id(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "deploy/localstack.py", "kill-broker", "x"],
        cwd=REPO,
        env={**os.environ, "SL_STACK_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "takes one node id" in done.stderr

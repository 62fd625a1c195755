"""The fault controls the fault matrix drives, on a private stack this test starts in a
stack directory of its own on free ports: PostgreSQL stopped, started and restarted; the
only broker paused (it hangs) and resumed; Toxiproxy's latency and reset toxics between
a client and PostgreSQL; a Kafka client that goes through the proxy for every
connection. One test: starting a stack is the heavy part."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from deploy import localstack
from services.ops.localcluster import free_port_block

pytestmark = pytest.mark.chaos


def _seconds(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def test_a_private_stack_takes_faults_and_comes_back(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    base = free_port_block(20)
    ports = localstack.Ports(kafka=base, controller=base + 1, postgres=base + 19)
    env = localstack.start_private_stack(stack, ports, proxy=True)
    try:
        database_url = env["DATABASE_URL"]
        admin: dict[str, str | int | float | bool] = {
            "bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"],
            "security.protocol": env["KAFKA_SECURITY_PROTOCOL"],
            "sasl.mechanism": env["KAFKA_SASL_MECHANISM"],
            "sasl.username": env["KAFKA_SASL_USERNAME"],
            "sasl.password": env["KAFKA_SASL_PASSWORD"],
            "log_level": 0,
        }

        # PostgreSQL stopped: connections refused; started again: answered, same port.
        localstack.stop_postgres_cluster(stack)
        with pytest.raises(psycopg.OperationalError, match=r"(?i)refused"):
            psycopg.connect(database_url, connect_timeout=3)
        localstack.start_postgres_cluster(stack)
        with psycopg.connect(database_url, connect_timeout=3) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)

        # Restarted (-m fast): a session that was open is ended.
        held = psycopg.connect(database_url, autocommit=True)
        localstack.restart_postgres_cluster(stack)
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
        held.close()

        # The broker paused: a metadata request hangs until its timeout, no refusal.
        localstack.pause_broker(stack)
        try:
            hung = AdminClient({**admin, "socket.timeout.ms": 10000})
            started = time.monotonic()
            with pytest.raises(KafkaException):
                hung.list_topics(timeout=3)
            assert time.monotonic() - started >= 2.5
        finally:
            localstack.resume_broker(stack)
        assert AdminClient(admin).list_topics(timeout=30).brokers

        proxies = localstack.proxy_endpoints(stack)
        assert proxies.postgres_proxy is not None
        with proxies.client() as toxiproxy:
            # 500 ms of latency on PostgreSQL's answers, then connection resets.
            with psycopg.connect(proxies.postgres_url(), autocommit=True) as conn:
                plain = _seconds(lambda: conn.execute("SELECT 1").fetchone())
                with toxiproxy.toxic(proxies.postgres_proxy, "latency", {"latency": 500}):
                    slowed = _seconds(lambda: conn.execute("SELECT 1").fetchone())
                assert slowed - plain >= 0.4, (plain, slowed)
                toxiproxy.add_reset_peer(proxies.postgres_proxy)
                with pytest.raises(psycopg.OperationalError):
                    conn.execute("SELECT 1")
            toxiproxy.reset()
            with psycopg.connect(proxies.postgres_url(), connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)

            # Kafka through the proxy: the broker advertises the proxy's address, so a
            # client that bootstraps there produces and consumes behind it.
            proxied = {**admin, "bootstrap.servers": proxies.kafka_bootstrap}
            proxied_admin = AdminClient(proxied)
            metadata = proxied_admin.list_topics(timeout=15)
            assert [f"{b.host}:{b.port}" for b in metadata.brokers.values()] == [
                proxies.kafka_bootstrap
            ]
            topic = f"faults.{uuid.uuid4().hex[:8]}"
            for future in proxied_admin.create_topics([NewTopic(topic, 1, 1)]).values():
                future.result(15)
            producer = Producer(proxied)
            producer.produce(topic, key=b"k", value=b"through the proxy")
            assert producer.flush(15) == 0
            consumer = Consumer({**proxied, "group.id": topic, "auto.offset.reset": "earliest"})
            consumer.subscribe([topic])
            got = None
            deadline = time.monotonic() + 30
            while got is None and time.monotonic() < deadline:
                message = consumer.poll(1.0)
                if message is not None and message.error() is None:
                    got = message.value()
            consumer.close()
            assert got == b"through the proxy"

            # The Kafka proxy disabled: a client that goes through it reaches nothing.
            toxiproxy.disable(proxies.kafka_proxy)
            with pytest.raises(KafkaException):
                AdminClient(proxied).list_topics(timeout=3)
            toxiproxy.enable(proxies.kafka_proxy)
            assert AdminClient(proxied).list_topics(timeout=15).brokers
    finally:
        localstack.stop_stack(stack)

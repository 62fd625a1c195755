"""The one Kafka client factory: every producer, consumer and admin client of
every service is built here, so security settings and sane defaults are never
copied by hand."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)


class KafkaUnavailableError(RuntimeError):
    """The cluster did not answer in time: a wrong address, or it is down."""


class KafkaLoginRefusedError(KafkaUnavailableError):
    """The cluster answered and refused our credentials: waiting does not cure it."""


_command_line = False
_answered: set[tuple[str, str, str | None]] = set()


def for_command_line(enabled: bool = True) -> None:
    """Short-lived commands (the operator's CLI): librdkafka logs nothing, and the
    cluster is probed once (``connect_timeout_s``) before the first client is built,
    so a cluster that is down is one ``KafkaUnavailableError`` within seconds instead
    of a client's own 30 s timeout with hundreds of lines of connection errors."""
    global _command_line  # noqa: PLW0603  (one switch per process, set by services.cli)
    _command_line = enabled
    _answered.clear()


def _probe_once(settings: KafkaSettings) -> None:
    if not _command_line:
        return
    key = (settings.bootstrap_servers, settings.security_protocol, settings.sasl_username)
    if key not in _answered:
        check_reachable(settings)
        _answered.add(key)


def base_config(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    """librdkafka settings every client shares: address, identity, security."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": f"{settings.client_id_prefix}.{client_id}",
        "security.protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        config["sasl.mechanism"] = settings.sasl_mechanism
    if settings.sasl_username:
        config["sasl.username"] = settings.sasl_username
    if settings.sasl_password:
        config["sasl.password"] = settings.sasl_password.get_secret_value()
    for key, value in (
        ("ssl.ca.location", settings.ssl_ca_location),
        ("ssl.certificate.location", settings.ssl_certificate_location),
        ("ssl.key.location", settings.ssl_key_location),
    ):
        if value:
            config[key] = value
    if settings.ssl_key_password:
        config["ssl.key.password"] = settings.ssl_key_password.get_secret_value()
    if _command_line:
        config["log_level"] = 0
    return config


def admin(settings: KafkaSettings, client_id: str = "admin") -> AdminClient:
    _probe_once(settings)
    return AdminClient(base_config(settings, client_id))


def producer(
    settings: KafkaSettings,
    client_id: str,
    *,
    transactional_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Producer:
    """An idempotent producer (acks=all); transactional when given an id."""
    _probe_once(settings)
    config = base_config(settings, client_id)
    config.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "zstd",
            # Fail a send that cannot be delivered instead of retrying forever.
            "delivery.timeout.ms": 60_000,
        }
    )
    if transactional_id:
        config["transactional.id"] = transactional_id
        config["transaction.timeout.ms"] = 60_000
    config.update(extra or {})
    return Producer(config)


def consumer(
    settings: KafkaSettings,
    group_id: str,
    *,
    client_id: str | None = None,
    read_committed: bool = True,
    auto_offset_reset: str = "earliest",
    extra: Mapping[str, Any] | None = None,
) -> Consumer:
    """A consumer that never commits on its own: services with side effects
    commit with the effect (or after it), never before."""
    _probe_once(settings)
    config = base_config(settings, client_id or group_id)
    config.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": auto_offset_reset,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        }
    )
    config.update(extra or {})
    return Consumer(config)


def check_reachable(settings: KafkaSettings) -> None:
    """Fail fast with a readable message instead of librdkafka retrying forever; says
    whether the cluster refused our credentials or did not answer at all."""
    seen: list[KafkaError] = []
    config: dict[str, Any] = {**base_config(settings, "probe"), "log_level": 0}
    config["error_cb"] = seen.append
    client = AdminClient(config)
    try:
        client.list_topics(timeout=settings.connect_timeout_s)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        client.poll(0)  # serves error_cb: an authentication failure is reported there
        refused = [e for e in seen if e.code() == KafkaError._AUTHENTICATION]
        if refused:
            raise KafkaLoginRefusedError(
                f"Kafka at {settings.bootstrap_servers!r} refused the login "
                f"{settings.sasl_username!r} ({refused[0].str()}). Check KAFKA_SASL_USERNAME, "
                "KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM (the local stack's are in "
                "deploy/.local/stack.env)."
            ) from exc
        reason = err.str() if isinstance(err, KafkaError) else str(exc)
        raise KafkaUnavailableError(
            f"Kafka at {settings.bootstrap_servers!r} did not answer within "
            f"{settings.connect_timeout_s:.0f}s ({reason}). Check KAFKA_BOOTSTRAP_SERVERS "
            "(or --bootstrap-server), or start the local stack with `./run stack start`."
        ) from exc


def partition_counts(client: Any, timeout: float = 30.0) -> dict[str, int]:
    """How many partitions each topic of the cluster has (topics in error left out)."""
    return {
        name: len(topic.partitions)
        for name, topic in client.list_topics(timeout=timeout).topics.items()
        if topic.error is None
    }


def watermarks(
    client: Consumer, topic: str, partition: int, timeout: float = 30.0
) -> tuple[int, int]:
    """``(low, high)`` of one partition, waiting out what a broker says for a moment
    after a topic is created or a leader moves (``NOT_LEADER_FOR_PARTITION``, a leader
    not known yet): retriable errors are retried until ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            low, high = client.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=max(0.1, deadline - time.monotonic())
            )
            return int(low), int(high)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            retriable = isinstance(err, KafkaError) and (err.retriable() or err.code() in _SETTLING)
            if not retriable or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


_SETTLING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._TRANSPORT,
    }
)
"""Errors of a partition that is still settling (new topic, leader election)."""

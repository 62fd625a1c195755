"""The foundation works against the real broker and database."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from services.runtime import kafka
from services.runtime.db import DatabaseUnavailableError, connect
from services.runtime.settings import DatabaseSettings, KafkaSettings


def _drain(consumer: object, expect_at_least: int, timeout: float = 20.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)  # type: ignore[attr-defined]
        if msg is None:
            if len(got) >= expect_at_least:
                break
            continue
        assert msg.error() is None, msg.error()
        got.append(msg.value())
    return got


def test_read_committed_sees_committed_and_not_aborted(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    topic = make_topic("txn", partitions=1)
    producer = kafka.producer(kafka_settings, "test", transactional_id=unique("txid"))
    producer.init_transactions(30)

    producer.begin_transaction()
    producer.produce(topic, b"committed-1")
    producer.produce(topic, b"committed-2")
    producer.commit_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, b"committed-3")
    producer.commit_transaction(30)

    committed = kafka.consumer(kafka_settings, unique("g"), read_committed=True)
    committed.subscribe([topic])
    uncommitted = kafka.consumer(kafka_settings, unique("g"), read_committed=False)
    uncommitted.subscribe([topic])
    try:
        assert _drain(committed, 3) == [b"committed-1", b"committed-2", b"committed-3"]
        # The aborted record is physically in the log: a read_uncommitted reader sees it.
        assert b"aborted" in _drain(uncommitted, 4)
    finally:
        committed.close()
        uncommitted.close()


def test_postgres_write_and_read(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE accounts (member_id text PRIMARY KEY, points bigint NOT NULL)")
    with db.transaction():
        db.execute("INSERT INTO accounts VALUES ('m-1', 5), ('m-2', 7)")
    db.execute("UPDATE accounts SET points = points + 10 WHERE member_id = 'm-1'")
    rows = db.execute("SELECT member_id, points FROM accounts ORDER BY member_id").fetchall()
    assert rows == [("m-1", 15), ("m-2", 7)]


def test_wrong_bootstrap_fails_fast_and_says_what_to_do() -> None:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", connect_timeout_s=3)
    started = time.monotonic()
    with pytest.raises(kafka.KafkaUnavailableError, match="KAFKA_BOOTSTRAP_SERVERS"):
        kafka.check_reachable(settings)
    assert time.monotonic() - started < 10


def test_reachable_cluster_passes_the_check(kafka_settings: KafkaSettings) -> None:
    kafka.check_reachable(kafka_settings)


def test_wrong_database_url_fails_fast() -> None:
    settings = DatabaseSettings(
        database_url="postgresql://nobody@127.0.0.1:1/none",
        connect_timeout_s=2,
    )
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match="DATABASE_URL"):
        connect(settings)
    assert time.monotonic() - started < 10

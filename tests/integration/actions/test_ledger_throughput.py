"""Benchmark (printed): ledger commands per second through the real broker into
PostgreSQL with the exactly-once pattern, and the ratio to a raw confluent-kafka
consumer reading the same topic in the same run.

``ACTIONS_BENCH_N`` (default 20,000) and ``ACTIONS_BENCH_BATCH`` (default 1,000)
change the size; the assertion is only a floor that catches a broken batch path.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from services.actions.bonus import BonusHandler
from services.actions.engine import ExactlyOnceConsumer
from services.actions.schema import migrate
from services.contracts.topics import COMMANDS_BONUS
from services.runtime import kafka
from services.runtime.db import connect
from tests.integration.actions.conftest import ActionsEnv, accrue, wait_for


def test_ledger_throughput_against_a_raw_consumer(env: ActionsEnv) -> None:
    n = int(os.environ.get("ACTIONS_BENCH_N", "20000"))
    batch = int(os.environ.get("ACTIONS_BENCH_BATCH", "1000"))
    topic = env.topic(COMMANDS_BONUS)
    for i in range(n):
        command = accrue(f"member-{i % 5000}", 1 + i % 10, cid=f"bench-{i}")
        while True:
            try:
                env.producer.produce(
                    topic, env.codec.encode(command, topic), command.member_id.encode()
                )
                break
            except BufferError:
                env.producer.poll(0.1)
        if i % 1000 == 0:
            env.producer.poll(0)
    assert env.producer.flush(60) == 0

    raw = kafka.consumer(env.kafka, f"t.raw.{uuid.uuid4().hex[:8]}")
    raw.subscribe([topic])
    seen, started = 0, time.perf_counter()
    deadline = time.monotonic() + 120
    first: float | None = None
    while seen < n and time.monotonic() < deadline:
        messages = raw.consume(batch, 1.0)
        if messages and first is None:
            first = time.perf_counter()
        seen += sum(1 for m in messages if m.error() is None)
    raw_elapsed = time.perf_counter() - (first or started)
    raw.close()
    assert seen == n

    settings = env.settings(batch_size=batch)
    with connect(settings.database, autocommit=True) as conn:
        migrate(conn, settings.db_schema)
    stop = threading.Event()
    consumer = ExactlyOnceConsumer(settings, BonusHandler(settings.deduct_policy), env.codec, stop)
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    wait_for(lambda: consumer.ready.is_set() or consumer.applied_messages, "assignment", 60)
    t0 = time.perf_counter()
    wait_for(lambda: consumer.applied_messages >= n, f"{n} applied", 180)
    eo_elapsed = time.perf_counter() - t0
    stop.set()
    thread.join(30)

    assert env.scalar("SELECT count(*) FROM entries") == n
    assert env.scalar("SELECT sum(balance) FROM accounts") == sum(1 + i % 10 for i in range(n))
    eo_rate, raw_rate = n / eo_elapsed, n / raw_elapsed
    print(
        f"\nledger exactly-once: {n} commands in {eo_elapsed:.2f}s = {eo_rate:,.0f} commands/s "
        f"(batch {batch}); raw confluent-kafka consumer: {raw_rate:,.0f} msg/s; "
        f"ratio {eo_rate / raw_rate:.3f}"
    )
    assert eo_rate > 300

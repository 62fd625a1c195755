"""The PostgreSQL sink idle at the end of a transactional command topic (the rules
worker writes commands in transactions): ``consumer_offsets`` and Kafka's committed
offsets reach the end offset, past the last commit marker, so no dashboard shows a
lag of 1 that no record will ever clear."""

from __future__ import annotations

import uuid

from confluent_kafka import TopicPartition

from services.contracts.topics import COMMANDS_BONUS
from services.runtime import kafka
from tests.integration.actions.conftest import ActionsEnv, accrue, wait_for


def test_the_ledger_idle_after_transactions_stores_the_end_offset(env: ActionsEnv) -> None:
    topic = env.topic(COMMANDS_BONUS)
    producer = kafka.producer(env.kafka, "position-test", transactional_id=uuid.uuid4().hex)
    producer.init_transactions(30)
    for batch in range(3):
        producer.begin_transaction()
        for n in range(4):
            command = accrue(f"m{n}", 1 + n, cid=f"c-{batch}-{n}")
            producer.produce(topic, env.codec.encode(command, topic), command.member_id.encode())
        producer.commit_transaction(30)
    settings = env.settings()
    env.start(settings, ("bonus",))
    wait_for(lambda: env.scalar("SELECT count(*) FROM entries") == 12, "every command")
    probe = kafka.consumer(env.kafka, f"t.ends.{uuid.uuid4().hex[:8]}")
    try:
        partitions = probe.list_topics(topic, 10).topics[topic].partitions
        ends = {
            p: probe.get_watermark_offsets(TopicPartition(topic, p), 10, cached=False)[1]
            for p in partitions
        }
    finally:
        probe.close()
    with_data = {p: end for p, end in ends.items() if end > 0}
    assert with_data, ends

    def stored() -> dict[int, int]:
        rows = env.query(
            "SELECT partition, next_offset FROM consumer_offsets WHERE topic = %s", topic
        )
        return {int(p): int(o) for p, o in rows}

    wait_for(lambda: stored() == with_data, f"consumer_offsets at the end offsets {with_data}", 15)
    member = kafka.consumer(env.kafka, settings.group("bonus"))
    try:

        def kafka_committed() -> dict[int, int]:
            tps = member.committed([TopicPartition(topic, p) for p in with_data], 10)
            return {tp.partition: tp.offset for tp in tps}

        wait_for(lambda: kafka_committed() == with_data, "Kafka's committed offsets", 15)
    finally:
        member.close()
    env.stop_all()

"""Against the real broker with ACLs on: every principal the catalog plans can do
what it is allowed (produce, read and commit with its group, init its transactional
id) and is refused everything else, for every catalog topic; a client without a
login, or with a wrong password, gets nothing at all."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from services.contracts.topics import COMMANDS_BONUS, TopicSettings, ensure
from services.ops import kafka_access
from services.ops.kafka_access import SERVICES, SystemNames
from services.runtime import kafka
from services.runtime.settings import KafkaSettings

FAST = {"socket.timeout.ms": 5000, "log_level": 0}


@pytest.fixture
def names(kafka_settings: KafkaSettings) -> Iterator[SystemNames]:
    if not (kafka_settings.sasl_mechanism or "").startswith("SCRAM"):
        pytest.skip("needs a broker with SCRAM logins and ACLs (the local stack has them)")
    prefix = f"t.acl-{uuid.uuid4().hex[:8]}."
    base = SystemNames.for_prefix(prefix)
    names = dataclasses.replace(base, topics=TopicSettings(prefix=prefix, partitions=1))
    yield names
    admin = kafka.admin(kafka_settings)
    kafka_access.revoke(admin, [names.user(service) for service in SERVICES])
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    for future in admin.delete_topics(mine).values() if mine else ():
        future.result(30)


def _login(settings: KafkaSettings, user: str, password: str) -> KafkaSettings:
    return settings.model_copy(update={"sasl_username": user, "sasl_password": SecretStr(password)})


def _can_produce(settings: KafkaSettings, topic: str) -> bool:
    results: list[KafkaError | None] = []
    producer = kafka.producer(
        settings,
        "acl-matrix",
        # Not idempotent: a principal with no Write anywhere would fail the producer as a
        # whole (InitProducerId), not the one send this checks.
        extra={"enable.idempotence": False, "message.timeout.ms": 10_000, **FAST},
    )
    producer.produce(topic, b"m", b"k", on_delivery=lambda err, _msg: results.append(err))
    producer.flush(15)
    assert results, f"no delivery report for {topic}"
    error = results[0]
    assert error is None or error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
    return error is None


def _can_read(consumer: Consumer, topic: str) -> bool:
    """Fetch the first record of the topic (there is one: the admin wrote it) and commit
    after it with the consumer's group. A topic the principal may not even describe is
    refused in its metadata (an assigned partition of it would just stay silent)."""
    seen = consumer.list_topics(topic, timeout=5).topics[topic].error
    if seen is not None and seen.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return False
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        for _ in range(40):
            message = consumer.poll(0.25)
            if message is None:
                continue
            error = message.error()
            if error is None:
                consumer.commit(message=message, asynchronous=False)
                return True
            if error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                return False
        raise AssertionError(f"neither a record nor a refusal from {topic}")
    finally:
        consumer.unassign()


def _can_commit(settings: KafkaSettings, group: str, topic: str) -> bool:
    client = kafka.admin(settings, "acl-matrix")
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 0)])
    future = client.alter_consumer_group_offsets([request], request_timeout=10)[group]
    refusals = {KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED}
    try:
        result = future.result(15)
    except KafkaException as exc:  # no coordinator for a group it may not even describe
        assert exc.args[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED, exc
        return False
    # A principal that may describe the group finds its coordinator; the commit's own
    # refusal then comes per partition.
    errors = [tp.error for tp in result.topic_partitions if tp.error is not None]
    assert all(error.code() in refusals for error in errors), errors
    return not errors


def _can_init_transactions(settings: KafkaSettings, transactional_id: str) -> bool:
    producer = kafka.producer(settings, "acl-matrix", transactional_id=transactional_id, extra=FAST)
    try:
        producer.init_transactions(15)
        return True
    except KafkaException as exc:
        code = exc.args[0].code()
        assert code in {
            KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        }, exc
        return False


def test_every_principal_can_do_what_the_catalog_allows_and_nothing_else(
    kafka_settings: KafkaSettings, names: SystemNames
) -> None:
    admin = kafka.admin(kafka_settings)
    specs = names.catalog()
    ensure(admin, specs, fix=False)
    seed = kafka.producer(kafka_settings, "acl-matrix-seed")
    for spec in specs:
        seed.produce(spec.name, b"seed", b"key")
    assert seed.flush(30) == 0
    passwords, _done = kafka_access.provision(admin, names)
    grants = set(kafka_access.plan(names))

    def allowed(service: str, resource: str, name: str, operation: str) -> bool:
        user = names.user(service)
        return any(
            g.user == user
            and g.resource == resource
            and g.operation == operation
            and (name == g.name if g.pattern == "literal" else name.startswith(g.name))
            for g in grants
        )

    # One group and one transactional id each service may use, and a stranger's.
    groups = {
        "detector": names.detector_app_id,
        "rules": names.rules_app_id,
        "replay": f"{names.replay_group_prefix}offer.20260101T000000Z",
        "actions": f"{names.actions_group_prefix}.bonus",
        "readmodel": names.readmodel_group,
        "ops": f"{kafka_access.DEADLETTER_CLI_GROUP}{uuid.uuid4().hex[:8]}",
        "collector": f"{names.stem}.collector",
        "link": f"{names.stem}.link",
        "lagmonitor": f"{names.stem}.lagmonitor",
    }
    transactional_ids = {
        "collector": f"{names.collector_transactional_prefix}.{names.topics.name('x')}.vk.1",
        "rules": f"{names.rules_app_id}.local-1",
        "replay": f"{groups['replay']}.replay",
    }
    mismatches: list[str] = []

    def check(service: str, what: str, expected: bool, actual: bool) -> None:
        if expected != actual:
            verdict = "allowed" if actual else "refused"
            mismatches.append(f"{names.user(service)} {what}: {verdict}, plan says {expected}")

    for service in SERVICES:
        login = _login(kafka_settings, names.user(service), passwords[service])
        consumer = kafka.consumer(login, groups[service], extra=FAST)
        try:
            for spec in specs:
                can_write = allowed(service, "topic", spec.name, "write")
                check(service, f"produce {spec.name}", can_write, _can_produce(login, spec.name))
                can_read = allowed(service, "topic", spec.name, "read") and allowed(
                    service, "group", groups[service], "read"
                )
                if allowed(service, "topic", spec.name, "read") and not can_read:
                    continue  # readable, but not with a group of this service: no such pair
                check(service, f"read {spec.name}", can_read, _can_read(consumer, spec.name))
        finally:
            consumer.close()
        readable = next(
            (s.name for s in specs if allowed(service, "topic", s.name, "read")), specs[0].name
        )
        for other, group in groups.items():
            if other != service and not group.startswith(groups[service]):
                check(service, f"commit as {group}", False, _can_commit(login, group, readable))
        for owner, transactional_id in transactional_ids.items():
            expected = allowed(service, "transactional_id", transactional_id, "write")
            assert expected == (owner == service), (service, transactional_id)
            check(
                service,
                f"init transactions as {transactional_id}",
                expected,
                _can_init_transactions(login, transactional_id),
            )

    assert not mismatches, "\n".join(mismatches)
    bonus = names.topics.name(COMMANDS_BONUS)
    assert not allowed("collector", "topic", bonus, "write")  # the example


def test_no_login_or_a_wrong_password_gets_nothing(
    kafka_settings: KafkaSettings, names: SystemNames
) -> None:
    anonymous = AdminClient({"bootstrap.servers": kafka_settings.bootstrap_servers, **FAST})
    with pytest.raises(KafkaException):
        anonymous.list_topics(timeout=5)
    user = names.user("rules")
    kafka_access.apply(kafka.admin(kafka_settings), [], {user: "the-right-one"})
    wrong = _login(kafka_settings, user, "not-the-password")
    with pytest.raises(KafkaException):
        AdminClient({**kafka.base_config(wrong, "acl-wrong"), **FAST}).list_topics(timeout=5)
    right = _login(kafka_settings, user, "the-right-one")
    AdminClient({**kafka.base_config(right, "acl-right"), **FAST}).list_topics(timeout=5)

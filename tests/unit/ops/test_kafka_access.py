"""The Kafka ACL plan is derived from the topic catalog: every producer and consumer
of every topic gets exactly its grant, the names match what the services run with,
and the users of two systems on one broker never collide."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.contracts.topics import COMMANDS_BONUS, TopicSpec
from services.ops import kafka_access
from services.ops.kafka_access import Grant, SystemNames, UnknownRoleError, plan, service_of
from services.ops.system import service_specs
from services.rules.replay import replay_group


@pytest.mark.parametrize("prefix", ["", "demo.", "t.run-1."])
def test_every_catalog_producer_and_consumer_has_its_grant(prefix: str) -> None:
    names = SystemNames.for_prefix(prefix)
    grants = set(plan(names))
    for spec in names.catalog():
        for role, op in [(r, "write") for r in spec.producers] + [
            (r, "read") for r in spec.consumers
        ]:
            service = service_of(role)
            if service is None:
                continue  # a reader outside the system
            want = Grant(names.user(service), "topic", spec.name, "literal", op)
            assert want in grants, f"{role} ({service}) cannot {op} {spec.name}"


def test_a_topic_with_an_unknown_role_cannot_be_planned() -> None:
    names = SystemNames.for_prefix("")
    spec = names.catalog()[0]
    stranger = TopicSpec(
        "new.topic", "k", (), 1, 1, {"cleanup.policy": "delete"}, ("billing",), ("rules",), "?"
    )
    with pytest.raises(UnknownRoleError, match="billing"):
        plan(names, [spec, stranger])


def test_only_the_command_writers_may_write_commands() -> None:
    names = SystemNames.for_prefix("demo.")
    bonus = names.topics.name(COMMANDS_BONUS)
    writers = {
        g.user for g in plan(names) if g.name == bonus and g.operation in {"write", "create"}
    }
    assert writers == {names.user("rules"), names.user("replay"), names.user("ops")}


def test_users_are_namespaced() -> None:
    one = kafka_access.users(plan(SystemNames.for_prefix("t.one.")))
    two = kafka_access.users(plan(SystemNames.for_prefix("t.two.")))
    assert not set(one) & set(two)
    assert kafka_access.users(plan(SystemNames.for_prefix("", "ci-7."))) == sorted(
        f"ci-7.{service}" for service in kafka_access.SERVICES
    )


def test_every_service_of_the_system_runs_with_the_names_the_plan_grants(tmp_path: Path) -> None:
    names = SystemNames.for_prefix("demo.")
    logins = {
        service: (names.user(service), f"pw-{service}")
        for service in ("collector", "detector", "rules", "actions", "readmodel", "lagmonitor")
    }
    specs = {
        s.name: s.env
        for s in service_specs(
            prefix="demo.", state_dir=tmp_path, groups_file=tmp_path / "g", kafka_logins=logins
        )
    }
    assert specs["rules"]["RULES_APP_ID"] == names.rules_app_id
    assert specs["detector"]["DETECTOR_APP_ID"] == names.detector_app_id
    assert specs["readmodel"]["READMODEL_GROUP"] == names.readmodel_group
    assert specs["actions"]["ACTIONS_GROUP_PREFIX"] == names.actions_group_prefix
    assert (
        specs["collector"]["COLLECTOR_TRANSACTIONAL_ID_PREFIX"]
        == names.collector_transactional_prefix
    )
    assert specs["lagmonitor"]["LAGMONITOR_GROUP_PREFIXES"] == names.lag_group_prefix
    for name, env in specs.items():
        user, password = logins.get(name, ("", ""))
        assert (env["KAFKA_SASL_USERNAME"], env["KAFKA_SASL_PASSWORD"]) == (user, password), name
    grants = plan(names)
    assert Grant(names.user("rules"), "group", names.rules_app_id, "prefixed", "read") in grants
    group = names.topics.name(replay_group("offer-1", datetime.now(UTC)))
    assert group.startswith(names.replay_group_prefix)


def test_without_logins_every_service_keeps_the_environment_login(tmp_path: Path) -> None:
    for spec in service_specs(prefix="", state_dir=tmp_path, groups_file=tmp_path / "g"):
        assert "KAFKA_SASL_USERNAME" not in spec.env


def test_passwords_are_kept_rotated_on_request_and_private(tmp_path: Path) -> None:
    first = kafka_access.passwords_for(["a", "b"], {})
    assert first["a"] != first["b"]
    path = tmp_path / "principals.json"
    kafka_access.save_passwords(path, first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = kafka_access.passwords_for(["a", "b"], kafka_access.load_passwords(path), ["b"])
    assert again["a"] == first["a"]
    assert again["b"] != first["b"]


def test_passwords_given_in_the_environment_are_the_ones_used() -> None:
    given = kafka_access.passwords_from_env(
        {"KAFKA_ACCESS_PASSWORD_RULES": "from-env", "KAFKA_ACCESS_PASSWORD_OPS": ""}
    )
    assert given == {"rules": "from-env"}

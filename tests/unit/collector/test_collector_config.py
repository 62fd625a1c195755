"""The groups file and the settings: bad input is refused with the field named."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from services.collector.api import OkClientSettings, VkClientSettings
from services.collector.groups import (
    GroupsFileError,
    MissingCredentialError,
    load_groups,
    parse_groups,
)
from services.collector.scheduler import next_delay
from services.collector.settings import CollectorSettings

VK = """
groups:
  - network: vk
    group_id: 42
    credentials: {access_token_env: VK_TOKEN, token_kind: group}
    base_url: http://127.0.0.1:8081/method/
    window: {days: 7}
"""


def test_the_example_file_is_valid() -> None:
    example = Path(__file__).parents[3] / "deploy" / "groups.example.yaml"
    groups = load_groups(example)
    assert [g.name for g in groups.groups] == ["vk:1001", "ok:52000000000001"]
    assert all(g.bucket_count == 16 for g in groups.groups)


def test_defaults_and_credentials_from_the_environment() -> None:
    group = parse_groups(VK).find("vk:42")
    assert (group.bucket_count, group.interval_s, group.jitter_s) == (16, 300.0, 0.0)
    assert group.window.to_window().days == 7
    settings = group.client_settings({"VK_TOKEN": "t0ken"})
    assert isinstance(settings, VkClientSettings)
    assert settings.access_token.get_secret_value() == "t0ken"
    assert settings.rate == 20
    assert settings.base_url == "http://127.0.0.1:8081/method/"
    with pytest.raises(MissingCredentialError, match="VK_TOKEN is not set"):
        group.client_settings({})


def test_ok_credentials() -> None:
    text = """
groups:
  - network: ok
    group_id: 7
    credentials:
      application_key_env: OK_KEY
      application_secret_key_env: OK_SECRET
      access_token_env: OK_TOKEN
"""
    group = parse_groups(text).groups[0]
    settings = group.client_settings({"OK_KEY": "K", "OK_SECRET": "S", "OK_TOKEN": "T"})
    assert isinstance(settings, OkClientSettings)
    assert settings.application_key == "K"
    assert group.window.last_posts == 100


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (VK.replace("access_token_env: VK_TOKEN", "access_token: secret"), "access_token"),
        (VK.replace("network: vk", "network: fb"), "groups.0.network"),
        (VK.replace("{days: 7}", "{}"), "give last_posts, days or both"),
        (VK.replace("group_id: 42", "group_id: -1"), "groups.0.group_id"),
        (VK + "    bucket_count: 0\n", "groups.0.bucket_count"),
        (VK + VK.replace("groups:\n", ""), "listed twice"),
        (VK.replace("VK_TOKEN", "not a name"), "not an environment variable name"),
        (VK.replace("network: vk", "network: ok"), "credentials"),
        ("groups: [", "not valid YAML"),
        ("groups: []", "groups"),
    ],
)
def test_invalid_files_are_refused_with_the_field(text: str, complaint: str) -> None:
    with pytest.raises(GroupsFileError, match=complaint):
        parse_groups(text, "g.yaml")


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(GroupsFileError, match="cannot read groups file"):
        load_groups(tmp_path / "nope.yaml")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092")
    monkeypatch.setenv("COLLECTOR_KAFKA__BOOTSTRAP_SERVERS", "k2:9092")
    monkeypatch.setenv("TOPIC_PREFIX", "demo.")
    settings = CollectorSettings()
    assert settings.kafka.bootstrap_servers == "k2:9092"
    assert settings.topics.name("social.events") == "demo.social.events"
    assert settings.http_port == 8082
    monkeypatch.setenv("COLLECTOR_DB_SCHEMA", "Robert'); DROP")
    with pytest.raises(ValueError, match="db_schema"):
        CollectorSettings()


def test_next_run_waits_the_interval_minus_the_run_plus_jitter() -> None:
    rng = random.Random(3)
    delays = [next_delay(60, 10, 5, rng) for _ in range(200)]
    assert all(55 <= d <= 65 for d in delays)
    assert max(delays) - min(delays) > 5
    assert next_delay(60, 0, 90, rng) == 0

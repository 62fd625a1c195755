"""The consumer in docs/consuming.md, run as another team would: in a virtualenv with
only confluent-kafka and the schema package built from ``schemas/python`` (nothing of
``services/``), against a real broker, reading our events by their headers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from services.contracts.codec import SingleObjectCodec
from services.contracts.examples import domain_events
from services.contracts.headers import contract_headers
from services.runtime import kafka
from services.runtime.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with the published schema artifact and confluent-kafka, no more."""
    where = tmp_path_factory.mktemp("outside")
    wheels = where / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels)]
    subprocess.run([*pip, str(ROOT / "schemas" / "python")], check=True, timeout=300)
    (wheel,) = wheels.glob("social_loyalty_schemas-*.whl")
    venv.create(where / "venv", with_pip=True)
    python = where / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel),
         f"confluent-kafka=={version('confluent-kafka')}"],
        check=True, timeout=600,
    )  # fmt: skip
    return python


def _run(
    python: Path, code: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-I", "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_the_artifact_is_standalone_and_reads_every_schema_version(
    outside: Path, tmp_path: Path
) -> None:
    probe = (
        "import importlib.util, social_loyalty_schemas as s\n"
        "assert importlib.util.find_spec('services') is None, 'services/ is importable'\n"
        "print(len(s.names()))\n"
    )
    result = _run(outside, probe, {"PATH": os.environ["PATH"]}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(list((ROOT / "schemas").glob("*.avsc")))


def test_documented_consumer_reads_our_events_by_their_headers(
    outside: Path,
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    make_topic: Callable[..., str],
    unique: Callable[[str], str],
) -> None:
    doc = (ROOT / "docs" / "consuming.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(blocks) == 1
    prefix = unique("ext") + "."
    topic = f"{prefix}social.events"  # the name under a deployment's TOPIC_PREFIX
    admin = kafka.admin(kafka_settings, "tests.consuming-doc")
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    dead_topic = make_topic("consuming-doc-dead")
    try:
        _consume_as_documented(
            blocks[0],
            outside,
            tmp_path=tmp_path,
            kafka_settings=kafka_settings,
            topic=topic,
            dead_topic=dead_topic,
        )
    finally:
        admin.delete_topics([topic])[topic].result(30)


def _consume_as_documented(
    code: str,
    outside: Path,
    *,
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    topic: str,
    dead_topic: str,
) -> None:
    prefix = topic.removesuffix("social.events")
    codec = SingleObjectCodec()
    producer = kafka.producer(kafka_settings, "consuming-doc")
    events = domain_events()
    for event in events[:5]:
        producer.produce(
            topic,
            key=event.key().to_bytes(),
            value=codec.encode(event),
            headers=contract_headers(event, "detector"),
        )
    producer.produce(topic, key=b"x", value=b"not avro")
    for event in events[5:]:
        producer.produce(
            topic,
            key=event.key().to_bytes(),
            value=codec.encode(event),
            headers=contract_headers(event, "detector"),
        )
    assert producer.flush(30) == 0
    password = (
        kafka_settings.sasl_password.get_secret_value() if kafka_settings.sasl_password else ""
    )
    env = {
        "PATH": os.environ["PATH"],
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": kafka_settings.security_protocol,
        "KAFKA_SASL_MECHANISM": kafka_settings.sasl_mechanism or "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": kafka_settings.sasl_username or "unused",
        "KAFKA_SASL_PASSWORD": password or "unused",
        "TOPIC_PREFIX": prefix,
        "GROUP_ID": f"{prefix}doc-reader",
        "DEAD_LETTER_TOPIC": dead_topic,
        "STOP_WHEN_IDLE_S": "4",
    }
    group = env["GROUP_ID"]

    result = _run(outside, code, env, tmp_path)
    assert result.returncode == 0, result.stderr
    for event in events:
        assert f"vk:100500 {event.avro_name} {event.event_id}" in result.stdout
    assert (
        sum(line.startswith("skip: dead-lettered offset 5") for line in result.stdout.splitlines())
        == 1
    )

    # Everything processed was committed: a second run of the same group reads nothing.
    again = _run(outside, code, env, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "", again.stdout

    # "stop" stops at the bad record and does not commit it: a new group stops there too.
    stopper = {**env, "GROUP_ID": group + ".stop", "ON_BAD_RECORD": "stop"}
    stopped = _run(outside, code, stopper, tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopping at " + topic in stopped.stdout
    assert events[5].event_id not in stopped.stdout
    again = _run(outside, code, stopper, tmp_path)
    assert "stopping at " + topic in again.stdout  # read again, not skipped

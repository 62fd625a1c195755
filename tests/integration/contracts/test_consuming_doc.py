"""The example consumer in docs/consuming.md runs as written and prints every event."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from services.contracts.codec import SingleObjectCodec
from services.contracts.examples import domain_events
from services.runtime import kafka
from services.runtime.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[3]


def test_documented_consumer_reads_our_events(
    kafka_settings: KafkaSettings, make_topic: Callable[..., str], unique: Callable[[str], str]
) -> None:
    doc = (ROOT / "docs" / "consuming.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(blocks) == 1
    topic = make_topic("consuming-doc")
    codec = SingleObjectCodec()
    producer = kafka.producer(kafka_settings, "consuming-doc")
    events = domain_events()
    for event in events:
        producer.produce(topic, key=event.key().to_bytes(), value=codec.encode(event))
    producer.produce(topic, key=b"x", value=b"not avro")
    assert producer.flush(30) == 0
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "TOPIC": topic,
        "GROUP_ID": unique("doc-reader"),
        "MAX_POLLS": "16",  # 11 messages and room for the group join
    }
    result = subprocess.run(
        [sys.executable, "-c", blocks[0]], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for event in events:
        assert f"vk:100500 {event.avro_name} {event.event_id} " in result.stdout
    assert sum(line.startswith("skip:") for line in lines) == 1

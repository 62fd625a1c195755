"""``asyncapi.yaml`` rendered from the topic catalog, so the document other teams
read cannot drift from what ``topics ensure`` creates. A test compares the file with
:func:`render`; regenerate with ``python -m services.contracts.asyncapi > asyncapi.yaml``.
"""

from __future__ import annotations

import base64
import re
import sys
from datetime import datetime
from enum import Enum
from typing import Any

import yaml

from services.contracts.examples import all_records
from services.contracts.headers import headers_or_none
from services.contracts.models import Record
from services.contracts.topics import TopicSettings, TopicSpec, catalog

AVRO_FORMAT = "application/vnd.apache.avro;version=1.11.0"
KEY_SCHEMAS = {
    "social.snapshots": "social_loyalty.snapshots.SnapshotKey",
    "social.events": "social_loyalty.events.EventKey",
    "loyalty.outcomes": "social_loyalty.commands.MemberKey",
}


def _ident(text: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", text)
    return words[0].lower() + "".join(w[:1].upper() + w[1:] for w in words[1:] if w)


def _key_schema(spec: TopicSpec) -> str | None:
    if spec.name.startswith("loyalty.commands."):
        return "social_loyalty.commands.MemberKey"
    return KEY_SCHEMAS.get(spec.name)


def _channel(spec: TopicSpec) -> dict[str, Any]:
    return {
        "address": spec.name,
        "description": spec.description,
        "messages": {
            name.rsplit(".", 1)[-1]: {"$ref": f"#/components/messages/{name.rsplit('.', 1)[-1]}"}
            for name in spec.value_types
        },
        "bindings": {
            "kafka": {
                "topic": spec.name,
                "partitions": spec.partitions,
                "replicas": spec.replication_factor,
                "topicConfiguration": {
                    key: ([value] if key == "cleanup.policy" else int(value))
                    for key, value in spec.configs.items()
                },
                "bindingVersion": "0.5.0",
            }
        },
    }


HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "CloudEvents Kafka binding, binary content mode "
    "(services/contracts/headers.py): what the record is without decoding it.",
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "event_id, or the command_id"},
        "ce_type": {"type": "string", "description": "the Avro full name"},
        "ce_source": {
            "type": "string",
            "description": "social-loyalty/<producer>: detector, link-api, rules, replay, actions",
        },
        "ce_time": {
            "type": "string",
            "format": "date-time",
            "description": "observed_at (events), issued_at (commands), occurred_at (outcomes)",
        },
        "ce_avrofingerprint": {
            "type": "string",
            "pattern": "^[0-9a-f]{16}$",
            "description": "CRC-64-AVRO fingerprint of the writer schema, as in the value",
        },
        "content-type": {"type": "string", "const": "application/avro"},
    },
    "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time"],
}
SOURCES = {"social.events": "detector", "loyalty.outcomes": "actions"}


def _jsonable(value: Any) -> Any:
    """A record's fields as JSON: times in RFC 3339, enums as their values, bytes in
    base64 (readable; on the wire the value is Avro, not this JSON)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, Enum):
        return value.value
    return value


def _examples(full_name: str, spec: TopicSpec, records: list[Record]) -> list[dict[str, Any]]:
    """The contract's own example records (services/contracts/examples.py) as JSON."""
    found = []
    for record in records:
        if record.avro_name != full_name:
            continue
        short = full_name.rsplit(".", 1)[-1]
        example: dict[str, Any] = {
            "name": f"{short}Example",
            "summary": f"An example {short}, as the contract tests build it.",
        }
        headers = headers_or_none(record, SOURCES.get(spec.name, "rules"))
        if headers is not None:
            example["headers"] = {k: v.decode() for k, v in headers if isinstance(v, bytes)}
        example["payload"] = _jsonable(record.model_dump())
        found.append(example)
        break
    return found


def _message(full_name: str, spec: TopicSpec, records: list[Record]) -> dict[str, Any]:
    key_schema = _key_schema(spec)
    key: dict[str, Any] = {"type": "string", "description": f"UTF-8 {spec.key}"}
    if key_schema:
        key["x-avro-schema"] = f"./schemas/{key_schema}.avsc"
    carries_headers = any(
        headers_or_none(r, "rules") is not None for r in records if r.avro_name == full_name
    )
    message: dict[str, Any] = {
        "name": full_name.rsplit(".", 1)[-1],
        "title": full_name,
        "contentType": "application/octet-stream",
        "description": "Avro single-object encoding (C3 01 + fingerprint + body), or the "
        "Confluent wire format (00 + schema id + body) where a schema registry is used.",
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": {"$ref": f"./schemas/{full_name}.avsc"}},
        "bindings": {"kafka": {"key": key, "bindingVersion": "0.5.0"}},
    }
    if carries_headers:
        message["headers"] = HEADERS
    examples = _examples(full_name, spec, records)
    if examples:
        message["examples"] = examples
    return message


def render(specs: list[TopicSpec] | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for the catalog with default settings (environment
    ignored: the document describes the product, not one deployment)."""
    # Replication as on a production cluster of three or more brokers.
    production = TopicSettings.model_construct(replication_factor=3)
    specs = specs if specs is not None else catalog(production)
    specs = [spec for spec in specs if spec.value_types]  # internal topics are no contract
    channels = {_ident(spec.name): _channel(spec) for spec in specs}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    records = all_records()
    for spec in specs:
        channel_ref = {"$ref": f"#/channels/{_ident(spec.name)}"}
        refs = [
            {"$ref": f"#/channels/{_ident(spec.name)}/messages/{name.rsplit('.', 1)[-1]}"}
            for name in spec.value_types
        ]
        for action, services in (("send", spec.producers), ("receive", spec.consumers)):
            for service in services:
                operations[_ident(f"{service} {action} {spec.name}")] = {
                    "action": action,
                    "channel": channel_ref,
                    "summary": f"{service} {'produces to' if action == 'send' else 'consumes'} "
                    f"{spec.name}",
                    "x-service": service,
                    "messages": refs,
                }
        for name in spec.value_types:
            messages[name.rsplit(".", 1)[-1]] = _message(name, spec, records)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "social-loyalty events",
            "version": "1.0.0",
            "description": "Topics of the social-loyalty system: snapshots from the collector, "
            "the domain event log, commands for the actions service, their outcomes and dead "
            "letters. Schemas: schemas/*.avsc; rules: docs/contract.md.",
        },
        "defaultContentType": "application/octet-stream",
        "servers": {
            "local": {
                "host": "127.0.0.1:19092",
                "protocol": "kafka",
                "description": "The local stack (./run stack start).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


class _Plain(yaml.SafeDumper):
    """Writes every repeated part out in full: no ``&id001`` anchors for readers."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(document: dict[str, Any]) -> str:
    header = "# Generated from services/contracts/topics.py by services/contracts/asyncapi.py.\n"
    return header + yaml.dump(
        document, Dumper=_Plain, sort_keys=False, width=100, allow_unicode=True
    )


if __name__ == "__main__":
    sys.stdout.write(dump(render()))

"""``asyncapi.yaml`` rendered from the topic catalog, so the document other teams
read cannot drift from what ``topics ensure`` creates. A test compares the file with
:func:`render`; regenerate with ``python -m services.contracts.asyncapi > asyncapi.yaml``.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import yaml

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


def _message(full_name: str, spec: TopicSpec) -> dict[str, Any]:
    key_schema = _key_schema(spec)
    key: dict[str, Any] = {"type": "string", "description": f"UTF-8 {spec.key}"}
    if key_schema:
        key["x-avro-schema"] = f"./schemas/{key_schema}.avsc"
    return {
        "name": full_name.rsplit(".", 1)[-1],
        "title": full_name,
        "contentType": "application/octet-stream",
        "description": "Avro single-object encoding (C3 01 + fingerprint + body), or the "
        "Confluent wire format (00 + schema id + body) where a schema registry is used.",
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": {"$ref": f"./schemas/{full_name}.avsc"}},
        "bindings": {"kafka": {"key": key, "bindingVersion": "0.5.0"}},
    }


def render(specs: list[TopicSpec] | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for the catalog with default settings (environment
    ignored: the document describes the product, not one deployment)."""
    specs = specs if specs is not None else catalog(TopicSettings.model_construct())
    specs = [spec for spec in specs if spec.value_types]  # internal topics are no contract
    channels = {_ident(spec.name): _channel(spec) for spec in specs}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
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
            messages[name.rsplit(".", 1)[-1]] = _message(name, spec)
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


def dump(document: dict[str, Any]) -> str:
    header = "# Generated from services/contracts/topics.py by services/contracts/asyncapi.py.\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=100, allow_unicode=True)


if __name__ == "__main__":
    sys.stdout.write(dump(render()))

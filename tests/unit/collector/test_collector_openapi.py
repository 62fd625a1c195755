"""The link API's OpenAPI document: every route is in it, and every example in it is
valid under the schema it is given for (and, for request bodies, under the model)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from services.collector.app import create_link_app
from services.collector.links import LinkRequest, RegistrationRequest
from services.collector.openapi import document
from services.collector.settings import CollectorSettings

TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def problems(value: Any, schema: dict[str, Any], doc: dict[str, Any], at: str = "$") -> list[str]:
    """What is wrong with ``value`` under ``schema``: the JSON Schema keywords pydantic
    emits for these models ($ref, type, properties, required, additionalProperties,
    items, enum, const, pattern, min/maxLength, anyOf)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return problems(value, doc["components"]["schemas"][name], doc, at)
    if "anyOf" in schema:
        if all(problems(value, option, doc, at) for option in schema["anyOf"]):
            return [f"{at}: matches no anyOf option"]
        return []
    out: list[str] = []
    kind = schema.get("type")
    if kind is not None:
        wrong_bool = isinstance(value, bool) and kind in {"integer", "number"}
        if not isinstance(value, TYPES[kind]) or wrong_bool:
            return [f"{at}: not {kind}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{at}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{at}: {value!r} is not {schema['const']!r}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{at}: {value!r} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1e9):
            out.append(f"{at}: length out of bounds")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            out += problems(item, schema["items"], doc, f"{at}[{index}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        out += [
            f"{at}: {name} is required" for name in schema.get("required", []) if name not in value
        ]
        for name, item in value.items():
            if name in properties:
                out += problems(item, properties[name], doc, f"{at}.{name}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{at}: {name} is not allowed")
    return out


def examples(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every request body and response example."""
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                yield f"{method} {path} request", body["schema"], body["example"]
            for status, response in operation["responses"].items():
                content = response.get("content", {}).get("application/json")
                if content:
                    yield f"{method} {path} {status}", content["schema"], content["example"]


def test_every_route_of_the_app_is_in_the_document() -> None:
    doc = document()
    app = create_link_app(CollectorSettings())
    routes = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes == documented
    assert ("/v1/registrations", "post") in routes
    json.dumps(doc)


def test_every_example_is_valid_under_its_schema() -> None:
    doc = document()
    found = list(examples(doc))
    assert len(found) >= 15
    for where, schema, example in found:
        assert problems(example, schema, doc) == [], where


@pytest.mark.parametrize("model", [LinkRequest, RegistrationRequest])
def test_request_examples_are_accepted_by_the_models_the_handlers_use(
    model: type[BaseModel],
) -> None:
    doc = document()
    ref = f"#/components/schemas/{model.__name__}"
    bodies = [e for w, s, e in examples(doc) if w.endswith("request") and s["$ref"] == ref]
    assert bodies
    for example in bodies:
        model.model_validate(example)


def test_the_checker_catches_a_wrong_example() -> None:
    doc = document()
    link = {"$ref": "#/components/schemas/LinkRequest"}
    assert problems({"network": "fb", "social_user_id": "1", "member_id": "m"}, link, doc)
    assert problems({"network": "vk", "social_user_id": "1"}, link, doc) == [
        "$: member_id is required"
    ]
    assert problems({"network": "vk", "social_user_id": "1", "member_id": "a b"}, link, doc)
    registration = {"$ref": "#/components/schemas/RegistrationRequest"}
    assert problems({"network": "ok", "social_user_id": "1", "extra": 1}, registration, doc)
    assert (
        problems({"network": "ok", "social_user_id": "1", "member_id": None}, registration, doc)
        == []
    )

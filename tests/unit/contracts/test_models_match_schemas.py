"""Every ``schemas/*.avsc`` has a model, every model has a schema, and they agree
field by field: name, type, optionality, default."""

from __future__ import annotations

import json
import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from services.contracts.models import RECORD_TYPES, ContractModel
from services.contracts.schemas import SCHEMA_DIR, full_name

SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.avsc"))
PRIMITIVES: dict[str, type] = {
    "string": str,
    "long": int,
    "int": int,
    "boolean": bool,
    "bytes": bytes,
    "double": float,
    "float": float,
}


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def assert_type_matches(avro: Any, annotation: Any, where: str, named: dict[str, Any]) -> None:
    annotation = _strip_annotated(annotation)
    if isinstance(avro, str) and avro in named:
        avro = named[avro]
    if isinstance(avro, list):
        assert avro[0] == "null" and len(avro) == 2, f"{where}: only [null, X] unions are used"
        assert typing.get_origin(annotation) in (typing.Union, types.UnionType), (
            f"{where}: schema is optional, model is not"
        )
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        assert len(args) == 1 and type(None) in typing.get_args(annotation), where
        assert_type_matches(avro[1], args[0], where, named)
        return
    assert typing.get_origin(annotation) not in (typing.Union, types.UnionType), (
        f"{where}: model is optional, schema is not"
    )
    if isinstance(avro, str):
        assert annotation is PRIMITIVES[avro], f"{where}: {avro} vs {annotation}"
        return
    kind = avro["type"]
    if avro.get("logicalType") == "timestamp-millis":
        assert kind == "long" and annotation is datetime, (
            f"{where}: timestamp-millis vs {annotation}"
        )
    elif kind == "enum":
        named[avro["name"]] = avro
        named[f"{avro.get('namespace', '')}.{avro['name']}"] = avro
        assert issubclass(annotation, Enum), f"{where}: enum vs {annotation}"
        assert [m.value for m in annotation] == avro["symbols"], f"{where}: enum symbols differ"
    elif kind == "array":
        assert typing.get_origin(annotation) is tuple, f"{where}: array must be tuple[X, ...]"
        item, ellipsis = typing.get_args(annotation)
        assert ellipsis is Ellipsis, where
        assert_type_matches(avro["items"], item, f"{where}[]", named)
    elif kind == "map":
        assert typing.get_origin(annotation) is dict, f"{where}: map must be dict[str, X]"
        key, value = typing.get_args(annotation)
        assert _strip_annotated(key) is str, f"{where}: map keys are str"
        assert_type_matches(avro["values"], value, f"{where}{{}}", named)
    elif kind == "record":
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel), where
        assert_record_matches(avro, annotation, named)
    else:
        assert_type_matches(kind, annotation, where, named)


def _normalise_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Enum):
        return value.value
    return value


def assert_record_matches(
    schema: dict[str, Any], model: type[BaseModel], named: dict[str, Any]
) -> None:
    name = full_name(schema)
    assert issubclass(model, ContractModel) and model.avro_name == name, (
        f"{model.__name__}.avro_name is {getattr(model, 'avro_name', None)!r}, schema is {name}"
    )
    assert model.model_config.get("frozen"), f"{model.__name__} must be frozen"
    avro_fields = {field["name"]: field for field in schema["fields"]}
    assert set(avro_fields) == set(model.model_fields), (
        f"{name}: only in schema {sorted(set(avro_fields) - set(model.model_fields))}, "
        f"only in model {sorted(set(model.model_fields) - set(avro_fields))}"
    )
    hints = typing.get_type_hints(model, include_extras=True)
    for field_name, field in avro_fields.items():
        where = f"{name}.{field_name}"
        assert field.get("doc"), f"{where}: every field needs a doc"
        assert_type_matches(field["type"], hints[field_name], where, named)
        info = model.model_fields[field_name]
        if "default" in field:
            if info.default_factory is not None:
                model_default = info.default_factory()  # type: ignore[call-arg]
            else:
                model_default = info.default
            assert model_default is not PydanticUndefined, (
                f"{where}: schema has a default, model not"
            )
            assert _normalise_default(model_default) == field["default"], (
                f"{where}: default {model_default!r} vs {field['default']!r}"
            )
        else:
            assert info.is_required(), f"{where}: model has a default, schema does not"


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_schema_and_model_agree(path: Any) -> None:
    schema = json.loads(path.read_text())
    assert schema.get("namespace", "").startswith("social_loyalty."), f"{path.name}: namespace"
    assert path.stem == full_name(schema), f"{path.name}: file name must be the full name"
    assert full_name(schema) in RECORD_TYPES, f"{path.name} has no model in RECORD_TYPES"
    assert_record_matches(schema, RECORD_TYPES[full_name(schema)], {})


def test_every_model_has_a_schema() -> None:
    names = {full_name(json.loads(path.read_text())) for path in SCHEMA_FILES}
    assert set(RECORD_TYPES) == names


def test_a_drifted_model_is_caught() -> None:
    """The checker itself fails on a difference (a test that cannot fail proves nothing)."""
    schema = json.loads((SCHEMA_DIR / "social_loyalty.events.PostLiked.avsc").read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "post_id"]
    with pytest.raises(AssertionError, match="only in model \\['post_id'\\]"):
        assert_record_matches(schema, RECORD_TYPES[full_name(schema)], {})
    schema = json.loads((SCHEMA_DIR / "social_loyalty.commands.BonusAccrue.avsc").read_text())
    for field in schema["fields"]:
        if field["name"] == "replay":
            field["default"] = True
    with pytest.raises(AssertionError, match="replay: default"):
        assert_record_matches(schema, RECORD_TYPES[full_name(schema)], {})

"""The contract models are generated from ``schemas/*.avsc``, and the committed ones are
what the schemas make."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.contracts import generate, model_spec
from services.contracts.schemas import SCHEMA_DIR


def test_the_committed_models_are_what_the_schemas_make() -> None:
    assert generate.stale() == [], (
        "schemas and models differ: run python -m services.contracts.generate and commit"
    )
    assert CliRunner().invoke(generate.app, ["--check"]).exit_code == 0


def _schemas_copy(tmp_path: Path) -> Path:
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_a_schema_change_makes_the_committed_models_stale(tmp_path: Path) -> None:
    schemas = _schemas_copy(tmp_path)
    path = schemas / "social_loyalty.events.PostLiked.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append(
        {"name": "reaction", "type": ["null", "string"], "default": None, "doc": "Which one."}
    )
    path.write_text(json.dumps(schema))
    assert generate.stale(schemas) == [generate.RECORDS_PATH]
    records = generate.generate(schemas)[generate.RECORDS_PATH]
    post_liked = records[records.index("class PostLiked(") :].split("\n\n\n")[0]
    # the schema's order: the new field last, with its default and doc
    assert post_liked.rstrip().endswith(
        'reaction: str | None = Field(default=None, description="Which one.")'
    )
    # a constraint type from model_spec, optional where the schema is
    assert "    post_id: PositiveId = Field(" in post_liked


def test_a_changed_enum_symbol_makes_the_enums_stale(tmp_path: Path) -> None:
    schemas = _schemas_copy(tmp_path)
    for path in schemas.glob("*.avsc"):
        path.write_text(path.read_text().replace('"apple"', '"apple", "max"'))
    assert generate.stale(schemas) == [generate.ENUMS_PATH]
    assert '    MAX = "max"' in generate.generate(schemas)[generate.ENUMS_PATH]


@pytest.mark.parametrize(
    ("field_type", "message"),
    [
        (["null", "string", "long"], 'only \\["null", X\\] unions'),
        ({"type": "fixed", "name": "Hash", "size": 16}, "is not mapped"),
    ],
)
def test_a_shape_the_models_cannot_hold_is_refused(
    tmp_path: Path, field_type: object, message: str
) -> None:
    schemas = _schemas_copy(tmp_path)
    path = schemas / "social_loyalty.events.PostLiked.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append({"name": "odd", "type": field_type, "doc": "An odd one."})
    path.write_text(json.dumps(schema))
    with pytest.raises(generate.SchemaShapeError, match=message):
        generate.generate(schemas)


def test_a_field_without_a_doc_is_refused(tmp_path: Path) -> None:
    schemas = _schemas_copy(tmp_path)
    path = schemas / "social_loyalty.events.PostLiked.avsc"
    schema = json.loads(path.read_text())
    del schema["fields"][0]["doc"]
    path.write_text(json.dumps(schema))
    with pytest.raises(generate.SchemaShapeError, match=r"PostLiked\.event_id: every field needs"):
        generate.generate(schemas)


def _with_field(tmp_path: Path, record: str, field: dict[str, object]) -> Path:
    schemas = _schemas_copy(tmp_path)
    path = schemas / f"social_loyalty.{record}.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append(field)
    path.write_text(json.dumps(schema))
    return schemas


def test_a_constraint_type_on_a_field_of_another_type_is_refused(tmp_path: Path) -> None:
    """``commands`` makes every ``reason`` a ``Text``: a long one is refused, not narrowed."""
    schemas = _with_field(
        tmp_path, "commands.MailingSet", {"name": "reason", "type": "long", "doc": "A code."}
    )
    with pytest.raises(generate.SchemaShapeError, match=r"makes it Text \(a str\).*is int"):
        generate.generate(schemas)


def test_a_default_the_models_cannot_hold_is_refused(tmp_path: Path) -> None:
    enum = {"type": "enum", "name": "Mood", "namespace": "social_loyalty", "symbols": ["calm"]}
    schemas = _with_field(
        tmp_path,
        "commands.MailingSet",
        {"name": "mood", "type": enum, "default": "calm", "doc": "How."},
    )
    with pytest.raises(generate.SchemaShapeError, match="default 'calm' for a Mood"):
        generate.generate(schemas)


def test_a_misspelt_constraint_name_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = dict(model_spec.FIELD_TYPES)
    tables["social_loyalty.commands"] = {**tables["social_loyalty.commands"], "sourse_id": "Ident"}
    monkeypatch.setattr(generate, "FIELD_TYPES", tables)
    with pytest.raises(
        generate.SchemaShapeError, match=r"names fields no record has: \['sourse_id'\]"
    ):
        generate.generate()


def test_a_record_in_a_namespace_the_spec_does_not_know_is_refused(tmp_path: Path) -> None:
    schemas = _schemas_copy(tmp_path)
    record = {
        "type": "record",
        "name": "Tick",
        "namespace": "social_loyalty.clock",
        "fields": [{"name": "at", "type": "long", "doc": "When."}],
    }
    (schemas / "social_loyalty.clock.Tick.avsc").write_text(json.dumps(record))
    with pytest.raises(generate.SchemaShapeError, match="FIELD_TYPES has no entry"):
        generate.generate(schemas)


def test_two_named_types_with_one_class_name_are_refused(tmp_path: Path) -> None:
    schemas = _schemas_copy(tmp_path)
    record = json.loads((schemas / "social_loyalty.events.PostLiked.avsc").read_text())
    record["namespace"] = "social_loyalty.outcomes"
    (schemas / "social_loyalty.outcomes.PostLiked.avsc").write_text(json.dumps(record))
    with pytest.raises(generate.SchemaShapeError, match=r"share a class name: \['PostLiked'\]"):
        generate.generate(schemas)


def test_a_doc_with_quotes_and_backslashes_reads_back_as_written(tmp_path: Path) -> None:
    doc = 'Matches C:\\new\\table and \\d, says "hi" and """ends with a quote"'
    schemas = _schemas_copy(tmp_path)
    path = schemas / "social_loyalty.events.PostLiked.avsc"
    schema = json.loads(path.read_text())
    schema["doc"] = doc
    path.write_text(json.dumps(schema))
    records = generate.generate(schemas)[generate.RECORDS_PATH]
    tree = ast.parse(records)
    post_liked = next(
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "PostLiked"
    )
    assert " ".join((ast.get_docstring(post_liked) or "").split()) == doc

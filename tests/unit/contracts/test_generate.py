"""The contract models are generated from ``schemas/*.avsc``, and the committed ones are
what the schemas make."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.contracts import generate
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

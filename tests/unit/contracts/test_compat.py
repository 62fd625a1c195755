"""The compatibility gate: released schemas stay readable both ways, and the gate
itself catches the changes that would break readers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.contracts.compat import check_both_ways, check_release
from services.contracts.schemas import SCHEMA_DIR, load_dir, released_versions

CURRENT = load_dir(SCHEMA_DIR)
RELEASED = released_versions()


def test_v1_is_released() -> None:
    assert "v1" in RELEASED
    assert set(RELEASED["v1"]) <= set(CURRENT)


@pytest.mark.parametrize("version", sorted(RELEASED))
def test_current_schemas_are_compatible_with_every_release(version: str) -> None:
    problems = check_release(RELEASED[version], CURRENT)
    assert not problems, f"schemas/ breaks release {version}:\n" + "\n".join(problems)


def _post_liked() -> dict[str, Any]:
    return copy.deepcopy(CURRENT["social_loyalty.events.PostLiked"])


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def test_renaming_a_required_field_fails_naming_it() -> None:
    changed = _post_liked()
    _field(changed, "post_id")["name"] = "wall_post_id"
    problems = check_both_ways(_post_liked(), changed)
    assert any("backward: PostLiked.wall_post_id" in p for p in problems), problems
    assert any("forward: PostLiked.post_id" in p for p in problems), problems


def test_removing_a_required_field_fails_naming_it() -> None:
    changed = _post_liked()
    changed["fields"].remove(_field(changed, "social_user_id"))
    problems = check_both_ways(_post_liked(), changed)
    assert any("forward: PostLiked.social_user_id: removed" in p for p in problems), problems


def test_an_incompatible_type_change_fails_naming_the_field() -> None:
    changed = _post_liked()
    _field(changed, "post_id")["type"] = "string"
    problems = check_both_ways(_post_liked(), changed)
    assert any("PostLiked.post_id: type changed from long to string" in p for p in problems)
    assert any("fastavro cannot resolve" in p for p in problems), problems


def test_a_new_enum_symbol_breaks_old_readers() -> None:
    changed = _post_liked()
    _field(changed, "network")["type"]["symbols"].append("tiktok")
    problems = check_both_ways(_post_liked(), changed)
    assert any("forward: PostLiked.network: enum symbols ['tiktok']" in p for p in problems)


def test_adding_an_optional_field_with_a_default_passes() -> None:
    changed = _post_liked()
    changed["fields"].append(
        {"name": "reaction", "type": ["null", "string"], "default": None, "doc": "Emoji."}
    )
    assert check_both_ways(_post_liked(), changed) == []


def test_widening_int_to_long_is_backward_only() -> None:
    old = copy.deepcopy(CURRENT["social_loyalty.snapshots.MembersChunk"])
    new = copy.deepcopy(old)
    _field(new, "bucket")["type"] = "long"
    problems = check_both_ways(old, new)
    assert problems and all(
        p.startswith("forward: MembersChunk.bucket") or "forward" in p for p in problems
    )


def test_a_removed_record_type_fails_the_release_check() -> None:
    current = {k: v for k, v in CURRENT.items() if not k.endswith(".GroupLeft")}
    assert check_release(RELEASED["v1"], current) == [
        "social_loyalty.events.GroupLeft: released record type was removed"
    ]

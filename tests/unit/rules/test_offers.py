"""The offer format: the acceptance set loads, bad offers fail with a clear reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.rules.offers import (
    EventType,
    Offer,
    OfferError,
    load_offer,
    load_offer_dir,
    load_offer_text,
    load_offers,
    parse_offer,
)
from tests.unit.rules.events import EXAMPLES

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))

ACCEPTANCE = {
    "link-profile",
    "join-group",
    "leave-group-penalty",
    "likes",
    "comments",
    "reposts",
    "likes-5-then-1",
}


def test_the_acceptance_set_is_there() -> None:
    assert {p.stem for p in EXAMPLE_FILES} >= ACCEPTANCE


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_example_validates_and_round_trips_through_json(path: Path) -> None:
    offer = load_offer(path)
    assert offer.id == path.stem
    stored = json.dumps(offer.model_dump(mode="json"))
    assert parse_offer(json.loads(stored)) == offer


def test_the_examples_load_together_with_distinct_ids() -> None:
    offers = load_offer_dir(EXAMPLES)
    assert len({o.id for o in offers}) == len(EXAMPLE_FILES)


def test_the_tiered_offer_reads_as_written() -> None:
    offer = load_offer(EXAMPLES / "likes-5-then-1.yaml")
    assert offer.reward is not None
    assert [offer.reward.points_for(n) for n in (1, 2, 3, 50)] == [5, 1, 1, 1]
    assert offer.period == "month"
    assert offer.limits.max_points == 15
    assert offer.trigger == (EventType.POST_LIKED,)


def test_a_json_file_loads_too(tmp_path: Path) -> None:
    path = tmp_path / "o.json"
    path.write_text(
        json.dumps(
            {
                "id": "j",
                "version": 2,
                "name": "JSON offer",
                "trigger": ["POST_LIKED", "COMMENT_POSTED"],
                "reward": {"points": 1},
                "actions": [{"type": "accrue"}],
            }
        )
    )
    assert load_offer(path).trigger == (EventType.POST_LIKED, EventType.COMMENT_POSTED)


def test_two_files_with_one_id_are_refused(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text((EXAMPLES / "likes.yaml").read_text())
    with pytest.raises(OfferError, match="already loaded from"):
        load_offers(sorted(tmp_path.iterdir()))


BASE: dict[str, Any] = {
    "id": "bad",
    "version": 1,
    "name": "Bad",
    "trigger": "POST_LIKED",
    "reward": {"points": 1},
    "actions": [{"type": "accrue"}],
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"max_point": 3}, r"max_point: Extra inputs are not permitted"),
        ({"trigger": "POST_LOVED"}, r"trigger\.0: Input should be 'PROFILE_LINKED'"),
        ({"trigger": []}, r"trigger: .*at least 1"),
        ({"reward": {"points": 1, "tiers": [{"points": 2}]}}, "exactly one of `points` or `tiers`"),
        (
            {"reward": {"tiers": [{"points": 5}, {"points": 1}]}},
            "only the last tier may omit `upto`",
        ),
        ({"reward": {"tiers": [{"upto": 3, "points": 5}, {"upto": 2, "points": 1}]}}, "must grow"),
        ({"reward": {"points": 0}}, r"reward\.points: Input should be greater than or equal to 1"),
        ({"reward": None}, "action `accrue` needs a `reward`"),
        ({"actions": [{"type": "counter", "name": "x"}]}, "`reward` needs an accrue or deduct"),
        ({"actions": [{"type": "accrue"}, {"type": "deduct"}]}, "at most one accrue or deduct"),
        ({"actions": [{"type": "bake"}]}, r"actions\.0: Input tag 'bake' found"),
        ({"period": "fortnight"}, r"period: Input should be 'day', 'week'"),
        ({"undo": {"policy": "fixed"}}, "policy `fixed` needs `points`"),
        ({"undo": {"policy": "deduct_earned", "points": 3}}, "only goes with policy `fixed`"),
        (
            {"trigger": "POST_UNLIKED", "undo": {"policy": "deduct_earned"}},
            r"\['POST_UNLIKED'\] are undo events themselves",
        ),
        (
            {"actions": [{"type": "deduct"}], "undo": {"policy": "deduct_earned"}},
            "needs an accrue action",
        ),
        ({"budget": 100, "actions": [{"type": "deduct"}]}, "`budget` needs an accrue action"),
        (
            {"trigger": ["PROFILE_LINKED"], "filters": {"group_ids": ["g"]}},
            r"filters\.group_ids can never match \['PROFILE_LINKED'\]",
        ),
        (
            {"trigger": ["GROUP_JOINED"], "filters": {"post_ids": ["p"]}},
            "filters.post_ids can never match",
        ),
        (
            {"filters": {"registration": True}},
            "registration only applies to trigger PROFILE_LINKED",
        ),
        ({"filters": {"networks": ["facebook"]}}, r"filters\.networks\.0: Input should be 'vk'"),
        (
            {"starts_at": "2025-02-01T00:00:00+03:00", "ends_at": "2025-01-01T00:00:00+03:00"},
            "starts_at must be before ends_at",
        ),
        ({"starts_at": "2025-02-01T00:00:00"}, r"starts_at: Input should have timezone info"),
        ({"when": {"counter": "likes"}}, "exactly one of equals, at_least, every"),
        ({"when": {"counter": "likes", "equals": 10, "every": 5}}, "exactly one of"),
        (
            {
                "actions": [
                    {"type": "accrue"},
                    {
                        "type": "message",
                        "channel": "sms",
                        "template": "t",
                        "params": {"a": "{pts}"},
                    },
                ]
            },
            r"unknown placeholder \{pts\}",
        ),
        (
            {
                "actions": [
                    {"type": "accrue"},
                    {"type": "message", "channel": "fax", "template": "t"},
                ]
            },
            r"actions\.1\.message\.channel",
        ),
        ({"id": "Has Spaces"}, r"id: String should match pattern"),
        (
            {
                "limits": {"max_points": 10},
                "reward": None,
                "actions": [{"type": "counter", "name": "x"}],
            },
            "max_points needs",
        ),
    ],
)
def test_a_bad_offer_says_what_is_wrong(change: dict[str, Any], expected: str) -> None:
    data = {**BASE, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(OfferError, match=expected) as caught:
        parse_offer(data, source="offers/bad.yaml")
    assert str(caught.value).startswith("offers/bad.yaml: invalid offer")


def test_not_yaml_and_not_a_mapping_are_clear_errors() -> None:
    with pytest.raises(OfferError, match=r"x\.yaml: not YAML/JSON"):
        load_offer_text("id: [unclosed", source="x.yaml")
    with pytest.raises(OfferError, match="an offer must be a mapping, got list"):
        load_offer_text("- 1\n- 2\n", source="x.yaml")


def test_offers_are_frozen() -> None:
    offer = parse_offer(BASE)
    with pytest.raises(ValueError, match="frozen"):
        offer.version = 2  # type: ignore[misc]
    assert isinstance(offer, Offer)


def test_numeric_group_and_post_ids_are_read_as_text() -> None:
    from tests.unit.rules.events import offer

    parsed = offer(filters={"group_ids": [1001], "post_ids": ["7", 8]})
    assert parsed.filters.group_ids == ("1001",)
    assert parsed.filters.post_ids == ("7", "8")

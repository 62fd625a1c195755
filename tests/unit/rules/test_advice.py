"""Warnings for offers made live that can never pay or that pay twice for one event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.rules.advice import advise, overlap
from services.rules.offers import Filters, load_offer_dir
from tests.unit.rules.events import EXAMPLES, example

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_the_examples_loaded_together_warn_about_nothing() -> None:
    offers = load_offer_dir(EXAMPLES)
    assert advise(offers, offers, NOW) == []
    assert advise(offers, offers, datetime(2040, 1, 1, tzinfo=UTC)) == []


def test_two_offers_paying_for_the_same_like_are_reported_once() -> None:
    everywhere = example("likes").model_copy(update={"filters": Filters()})
    tiers = example("likes-5-then-1")
    lines = advise([everywhere, tiers], [everywhere, tiers], NOW)
    assert lines == [
        "likes: likes-5-then-1 is active and also pays for POST_LIKED on the same events: "
        "a member earns both (deactivate one, or narrow their filters)"
    ]


def test_filters_that_cannot_both_match_one_event_do_not_overlap() -> None:
    vk = example("likes-5-then-1")
    ok = example("likes")
    assert not overlap(vk, ok)
    one_group = vk.model_copy(update={"filters": Filters(group_ids=("1001",))})
    other_group = vk.model_copy(update={"id": "other", "filters": Filters(group_ids=("2",))})
    assert not overlap(one_group, other_group)
    assert overlap(one_group, other_group.model_copy(update={"filters": Filters()}))


def test_windows_that_do_not_meet_do_not_overlap() -> None:
    spring = example("reposts").model_copy(
        update={"starts_at": NOW, "ends_at": NOW + timedelta(days=90)}
    )
    summer = spring.model_copy(
        update={"id": "summer", "starts_at": NOW + timedelta(days=90), "ends_at": None}
    )
    assert not overlap(spring, summer)
    assert overlap(spring, summer.model_copy(update={"starts_at": NOW + timedelta(days=89)}))


def test_a_milestone_bonus_pays_on_top_by_design() -> None:
    assert not overlap(example("tenth-like"), example("likes"))


def test_an_offer_whose_window_has_ended_is_reported() -> None:
    ended = example("reposts").model_copy(update={"ends_at": NOW - timedelta(days=1)})
    (line,) = advise([ended], [ended], NOW)
    assert line.startswith("reposts: its window ended at 2026-12-02T12:00:00+00:00")
    later = example("reposts").model_copy(update={"starts_at": NOW + timedelta(days=1)})
    assert advise([later], [later], NOW) == [
        "reposts: pays nothing before 2026-12-04T12:00:00+00:00"
    ]

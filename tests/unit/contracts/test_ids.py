"""Deterministic ids: same fact, same id; any difference in the fact, a new id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.contracts.examples import T0, T1, domain_events
from services.contracts.ids import command_id, epoch_millis, event_id
from services.contracts.models import PostLiked


def test_event_id_ignores_observed_at_so_replays_match() -> None:
    first = domain_events()[4]
    replayed = PostLiked.build(
        **{**first.model_dump(exclude={"event_id"}), "observed_at": T1 + timedelta(days=3)}
    )
    assert replayed.event_id == first.event_id


def test_event_id_is_the_same_across_time_zones() -> None:
    moscow = timezone(timedelta(hours=3))
    assert event_id("PostLiked", "vk", 1, "2", T0, post_id=3) == event_id(
        "social_loyalty.events.PostLiked", "vk", 1, "2", T0.astimezone(moscow), post_id=3
    )


@pytest.mark.parametrize(
    "changed",
    [
        {"event_type": "PostUnliked"},
        {"network": "ok"},
        {"group_id": 2},
        {"social_user_id": "3"},
        {"snapshot_at": T1},
        {"post_id": 4},
        {"comment_id": "x"},
    ],
)
def test_event_id_changes_with_every_part_of_the_fact(changed: dict[str, object]) -> None:
    base: dict[str, object] = {
        "event_type": "PostLiked", "network": "vk", "group_id": 1, "social_user_id": "2",
        "snapshot_at": T0, "post_id": 3, "comment_id": None,
    }  # fmt: skip
    assert event_id(**{**base, **changed}) != event_id(**base)  # type: ignore[arg-type]


def test_ten_domain_events_have_ten_ids() -> None:
    assert len({event.event_id for event in domain_events()}) == 10


def test_command_id_is_deterministic_and_distinct_per_action() -> None:
    assert command_id("o", "e", 0) == command_id("o", "e", 0)
    assert len({command_id("o", "e", i) for i in range(5)} | {command_id("p", "e", 0)}) == 6
    with pytest.raises(ValueError, match="action_index"):
        command_id("o", "e", -1)


def test_epoch_millis_refuses_naive_times() -> None:
    assert epoch_millis(datetime(1970, 1, 1, 0, 0, 1, 999_999, tzinfo=UTC)) == 1999
    with pytest.raises(ValueError, match="naive"):
        epoch_millis(datetime(2025, 1, 1))

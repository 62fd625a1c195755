"""An offer's name, reasons and message params are bounded by the contract, so every
offer that is accepted makes only commands the contract takes (``SendMessage.params``
is ``bounds.Params``; a reason is ``bounds.Text``). An offer name of 900 KB was
accepted, and a 500 KB push parameter delivered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.contracts.bounds import MAX_NAME, MAX_PARAM_NAME, MAX_PARAMS, MAX_TEXT
from services.contracts.codec import SingleObjectCodec
from services.rules.offers import PLACEHOLDER_LENGTHS, OfferError, parse_offer

CODEC = SingleObjectCodec()


def _offer(*, message: dict[str, Any] | None = None, **change: Any) -> dict[str, Any]:
    actions: list[dict[str, Any]] = [{"type": "accrue"}]
    if message is not None:
        actions.append({"type": "message", "channel": "push", "template": "t", **message})
    return {
        "id": "likes",
        "version": 1,
        "name": "Likes",
        "trigger": "POST_LIKED",
        "reward": {"points": 5},
        "actions": actions,
        **change,
    }


def _refused(data: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(OfferError) as caught:
        parse_offer(data)
    problems = {e["field"]: e["message"] for e in caught.value.errors}
    assert field in problems, problems
    assert message in problems[field], problems


def test_a_name_of_900_kb_is_refused_and_one_at_the_bound_taken() -> None:
    _refused(_offer(name="n" * 900_000), "name", f"at most {MAX_NAME} characters")
    assert parse_offer(_offer(name="n" * MAX_NAME)).name == "n" * MAX_NAME


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {"actions": [{"type": "accrue", "reason": "r" * (MAX_TEXT + 1)}]},
            "actions.0.accrue.reason",
        ),
        ({"undo": {"policy": "deduct_earned", "reason": "r" * (MAX_TEXT + 1)}}, "undo.reason"),
    ],
)
def test_a_reason_longer_than_a_commands_is_refused(change: dict[str, Any], field: str) -> None:
    _refused(_offer(**change), field, f"at most {MAX_TEXT} characters")


def test_a_500_kb_param_is_refused() -> None:
    message = {"params": {"title": "x" * 500_000}}
    _refused(_offer(message=message), "actions.1.message.params", "renders up to 500000")


def test_params_count_the_points_every_message_gets() -> None:
    most = {f"p{i}": "v" for i in range(MAX_PARAMS - 1)}
    assert parse_offer(_offer(message={"params": most}))
    assert parse_offer(_offer(message={"params": {**most, "points": "{points}"}}))
    _refused(
        _offer(message={"params": {**most, "one_more": "v"}}),
        "actions.1.message.params",
        f"at most {MAX_PARAMS}",
    )


def test_a_param_name_longer_than_the_bound_is_refused() -> None:
    assert parse_offer(_offer(message={"params": {"k" * MAX_PARAM_NAME: "v"}}))
    _refused(
        _offer(message={"params": {"k" * (MAX_PARAM_NAME + 1): "v"}}),
        "actions.1.message.params",
        f"at most {MAX_PARAM_NAME}",
    )


@pytest.mark.parametrize("placeholder", sorted(PLACEHOLDER_LENGTHS))
def test_a_param_is_measured_with_each_placeholder_at_its_longest(placeholder: str) -> None:
    room = MAX_TEXT - PLACEHOLDER_LENGTHS[placeholder]
    fits = "x" * room + f"{{{placeholder}}}"
    assert parse_offer(_offer(message={"params": {"p": fits}}))
    _refused(
        _offer(message={"params": {"p": "x" + fits}}),
        "actions.1.message.params",
        f"renders up to {MAX_TEXT + 1} characters",
    )


def test_the_longest_message_an_accepted_offer_can_make_is_a_valid_send_message() -> None:
    """Every param at its bound, every placeholder filled with the longest value its
    contract field can hold: the command still encodes."""
    placeholders = "".join(f"{{{p}}}" for p in sorted(PLACEHOLDER_LENGTHS))
    value = "x" * (MAX_TEXT - sum(PLACEHOLDER_LENGTHS.values())) + placeholders
    params = {f"{i:0{MAX_PARAM_NAME}d}": value for i in range(MAX_PARAMS - 1)}
    offer = parse_offer(_offer(message={"params": params}))
    action = offer.actions[1]
    longest = {p: "9" * n for p, n in PLACEHOLDER_LENGTHS.items()}
    rendered = {k: v.format_map(longest) for k, v in action.params.items()}  # type: ignore[union-attr]
    rendered["points"] = "9" * PLACEHOLDER_LENGTHS["points"]
    assert max(len(v) for v in rendered.values()) == MAX_TEXT
    command = {
        "command_id": "c",
        "member_id": "m",
        "offer_id": offer.id,
        "source_event_id": "e",
        "channel": "push",
        "template_id": "t",
        "params": rendered,
        "marketing": False,
        "issued_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    assert CODEC.encode_plain("SendMessage", command)

"""Offers the API accepts cannot make the rules worker overflow."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.rules.offers import Offer


def _offer(**change: Any) -> dict[str, Any]:
    return {
        "id": "likes",
        "version": 1,
        "name": "Likes",
        "trigger": "POST_LIKED",
        "reward": {"points": 5},
        "actions": [{"type": "accrue"}],
        **change,
    }


@pytest.mark.parametrize(
    "change",
    [
        {"reward": {"points": 10**20}},
        {"budget": 10**30},
        {"version": 10**30},
        {"ends_at": "9999-12-31T00:00:00Z"},
        {"undo": {"policy": "deduct_earned", "within": "P999999999D"}},
    ],
)
def test_offers_out_of_bounds_are_refused(change: dict[str, Any]) -> None:
    Offer.model_validate(_offer())
    with pytest.raises(ValidationError):
        Offer.model_validate(_offer(**change))

"""The one definition of a valid value, as each edge sees it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.contracts import models as m
from services.contracts.bounds import INT64_MAX, MAX_POINTS, check_social_user_id
from services.contracts.codec import SingleObjectCodec
from services.contracts.examples import all_records

CODEC = SingleObjectCodec()


@pytest.mark.parametrize("good", ["1", "4242", str(INT64_MAX)])
def test_numeric_social_ids_are_canonical_int64(good: str) -> None:
    assert check_social_user_id("vk", good) == good
    assert check_social_user_id("ok", good) == good


@pytest.mark.parametrize(
    "bad", ["", "0", "04242", "4242\n", " 4242", "²", "١٢", str(INT64_MAX + 1), "9" * 5000, "-1"]
)
def test_numeric_social_ids_refuse_other_spellings(bad: str) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        check_social_user_id("vk", bad)


def test_apple_ids_are_bounded_and_plain() -> None:
    assert check_social_user_id("apple", "001234.abcdef.0042") == "001234.abcdef.0042"
    for bad in ("", "a" * 256, "a\nb", "a\x00b", "é"):
        with pytest.raises(ValueError):
            check_social_user_id("apple", bad)


def _record(name: str) -> m.ContractModel:
    return next(r for r in all_records() if type(r).__name__ == name)


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("ProfileLinked", {"member_id": ""}),
        ("ProfileLinked", {"member_id": "ni\x00na"}),
        ("ProfileLinked", {"member_id": "m" * 129}),
        ("ProfileLinked", {"social_user_id": "4242\n"}),
        ("PostLiked", {"observed_at": datetime(9999, 12, 31, tzinfo=UTC)}),
        ("PostLiked", {"post_id": 0}),
        ("BonusAccrue", {"points": MAX_POINTS + 1}),
        ("BonusAccrue", {"budget": 10**30}),
        ("BonusAccrue", {"reason": "a\x00b"}),
        ("CounterIncrement", {"by": 10**12}),
    ],
)
def test_records_out_of_bounds_are_refused_by_the_model_and_the_codec(
    name: str, change: dict[str, Any]
) -> None:
    value = {**_record(name).model_dump(), **change}
    with pytest.raises(ValidationError):
        type(_record(name)).model_validate(value)
    with pytest.raises(ValueError):
        CODEC.encode_plain(name, value)

"""What the offers API's body parser refuses before an offer is validated (pure)."""

from __future__ import annotations

import time

import pytest

from services.rules.offers import OfferError
from services.rules.offers_api import MAX_INT_LITERAL, parse_body

HUGE = "1" * 5000  # over Python's 4,300-digit limit for int(str)


@pytest.mark.parametrize(
    "body",
    [
        f'{{"id": "x", "version": {HUGE}}}',  # JSON
        f'{{"id": "x", "version": -{HUGE}}}',
        f"id: x\nversion: {HUGE}\n",  # YAML, after the JSON attempt failed
        f"id: x\nversion: 1_{HUGE}\n",
        f'id: x\nversion: !!int "{HUGE}"\n',
        f"id: x\nversion: 0x{'f' * 5000}\n",  # converts, but no offer number is that long
        "id: x\nversion: 1" + ":00" * 20_000 + "\n",  # YAML 1.1 base 60: quadratic time
    ],
    ids=["json", "json-negative", "yaml", "yaml-underscores", "yaml-tag", "yaml-hex", "yaml-60"],
)
def test_an_integer_too_long_for_an_offer_is_an_offer_error(body: str) -> None:
    started = time.monotonic()
    with pytest.raises(OfferError, match=f"an integer of .* characters .at most {MAX_INT_LITERAL}"):
        parse_body(body.encode())
    assert time.monotonic() - started < 1.0


def test_integers_an_offer_can_hold_still_parse() -> None:
    longest = str(2**63 - 1)
    assert parse_body(f'{{"version": {longest}, "b": -1}}'.encode()) == {
        "version": 2**63 - 1,
        "b": -1,
    }
    assert parse_body(f"version: {longest}\nb: 0x1f\nc: 1_000\nd: 1:30\n".encode()) == {
        "version": 2**63 - 1,
        "b": 31,
        "c": 1000,
        "d": 90,
    }
    assert parse_body(("a: " + "9" * MAX_INT_LITERAL).encode()) == {"a": int("9" * MAX_INT_LITERAL)}

"""Which errors are retried, skipped or stop the run, and how long retries wait."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.collector.api.errors import Action, abort_message, backoff_delay, classify


@pytest.mark.parametrize(
    ("network", "code", "action"),
    [
        ("vk", 6, Action.RETRY),
        ("vk", 9, Action.RETRY),
        ("vk", 29, Action.RETRY),
        ("vk", 10, Action.RETRY),
        ("vk", 14, Action.ABORT),
        ("vk", 5, Action.ABORT),
        ("vk", 15, Action.SKIP),
        ("vk", 18, Action.SKIP),
        ("vk", 30, Action.SKIP),
        ("vk", 203, Action.SKIP),
        ("vk", 212, Action.SKIP),
        ("vk", 260, Action.SKIP),
        ("vk", 100, Action.ABORT),  # a bad parameter is our bug: never guess
        ("ok", 2, Action.RETRY),
        ("ok", 8, Action.RETRY),
        ("ok", 102, Action.ABORT),
        ("ok", 104, Action.ABORT),
        ("ok", 10, Action.SKIP),
        ("ok", 300, Action.SKIP),
        ("ok", 15, Action.ABORT),  # VK's skip codes mean nothing on OK
    ],
)
def test_classification(network: str, code: int, action: Action) -> None:
    assert classify(network, code) is action  # type: ignore[arg-type]


@given(
    attempt=st.integers(1, 30),
    base=st.floats(0, 5),
    cap=st.floats(0, 60),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_jittered_below_an_exponential_ceiling(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    delay = backoff_delay(attempt, base, cap, random.Random(seed))
    assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1))


def test_backoff_spreads_retries() -> None:
    rng = random.Random(1)
    delays = {round(backoff_delay(3, 1.0, 30.0, rng), 3) for _ in range(50)}
    assert len(delays) > 40


def test_abort_messages_tell_the_operator_what_to_do() -> None:
    assert "captcha" in abort_message("vk", 14, "Captcha needed", "likes.getList")
    assert "new token" in abort_message("vk", 5, "User authorization failed", "wall.get")
    assert "expired" in abort_message("ok", 102, "PARAM_SESSION_EXPIRED", "group.getMembers")

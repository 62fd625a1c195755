"""Which errors are retried, skipped or stop the run, and how long retries wait."""

from __future__ import annotations

import pytest

from services.collector.api.errors import Action, abort_message, classify


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


def test_abort_messages_tell_the_operator_what_to_do() -> None:
    assert "captcha" in abort_message("vk", 14, "Captcha needed", "likes.getList")
    assert "new token" in abort_message("vk", 5, "User authorization failed", "wall.get")
    assert "expired" in abort_message("ok", 102, "PARAM_SESSION_EXPIRED", "group.getMembers")

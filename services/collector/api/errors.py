"""What an API error means for a collection run: retry, skip the object, or stop.

The classification is a pure function of the network and the error code, so it
is tested without HTTP and the two clients cannot drift apart in spirit.

VK codes (https://dev.vk.com/reference/errors):
  1 unknown, 6 too many requests per second, 9 flood control, 10 internal
  server error, 29 rate limit reached: back off and retry.
  5 authorization failed (bad or revoked token), 14 captcha needed: stop the
  run; retrying would only dig the hole deeper.
  15 access denied, 18 page deleted or banned, 30 private profile, 203 access
  to the group denied, 212 access to post comments denied, 260 access to the
  group list denied: skip that object and record why.

OK codes (apiok.ru/dev/errors):
  1 UNKNOWN, 2 SERVICE, 7 ACTION_BLOCKED, 8 FLOOD_BLOCKED, 11 LIMIT_REACHED: retry.
  3 METHOD, 9 IP_BLOCKED, 101 PARAM_API_KEY, 102 PARAM_SESSION_EXPIRED,
  103 PARAM_SESSION_KEY, 104 PARAM_SIGNATURE, 105 PARAM_RESIGNATURE: stop.
  10 PERMISSION_DENIED, 50 NOT_ADMIN, 106 PARAM_ENTITY_ID, 300 NOT_FOUND: skip.

Any code not listed stops the run: an unknown error is a bug or a changed API,
and guessing would risk publishing a half-read group.
"""

from __future__ import annotations

import enum
from typing import Literal

from services.collector.api.records import Skip

Network = Literal["vk", "ok"]


class Action(enum.Enum):
    """What the client does with an error."""

    RETRY = "retry"
    SKIP = "skip"
    ABORT = "abort"


VK_RETRY = frozenset({1, 6, 9, 10, 29})
VK_SKIP = frozenset({15, 18, 30, 203, 212, 260})
VK_ABORT = frozenset({5, 14})

OK_RETRY = frozenset({1, 2, 7, 8, 11})
OK_SKIP = frozenset({10, 50, 106, 300})
OK_ABORT = frozenset({3, 9, 101, 102, 103, 104, 105})


def classify(network: Network, code: int) -> Action:
    """The action for an API error code on a network."""
    retry, skip = (VK_RETRY, VK_SKIP) if network == "vk" else (OK_RETRY, OK_SKIP)
    if code in retry:
        return Action.RETRY
    if code in skip:
        return Action.SKIP
    return Action.ABORT


class ApiError(Exception):
    """Base of every error the API clients raise."""


class RunAbortedError(ApiError):
    """The run must stop: bad token, captcha, an unknown error, retries used up.

    The collector publishes nothing for a run that ends this way, so a half-read
    group never looks like members leaving.
    """

    def __init__(self, message: str, *, code: int | None = None, method: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.method = method


class RetriesExhaustedError(RunAbortedError):
    """A transient error (rate limit, 5xx, network) outlasted the retry budget."""


class InconsistentReadError(RunAbortedError):
    """The member list kept changing while it was read; a partial list is not published."""


class ObjectSkippedError(ApiError):
    """Raised inside a client when an object must be skipped; carries the ``Skip`` record."""

    def __init__(self, skip: Skip) -> None:
        super().__init__(f"{skip.object}: error {skip.code} {skip.message}")
        self.skip = skip


def abort_message(network: Network, code: int, message: str, method: str) -> str:
    """A message an operator can act on, without the token."""
    name = network.upper()
    if network == "vk" and code == 14:
        hint = (
            "VK demands a captcha: the token is being throttled. The run stops; "
            "lower the request rate or pass the captcha for this account, then rerun."
        )
    elif network == "vk" and code == 5:
        hint = "the access token is invalid, expired or revoked: issue a new token."
    elif network == "ok" and code in {102, 103}:
        hint = "the OK session (access token) expired or is invalid: issue a new token."
    elif network == "ok" and code in {101, 104, 105}:
        hint = "check application_key and application secret key: the request signature failed."
    else:
        hint = "an error this client does not know how to handle safely."
    return f"{name} error {code} on {method}: {message} -- {hint}"

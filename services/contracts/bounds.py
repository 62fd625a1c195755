"""What a valid value is, defined once for the contract, the APIs and the consumers.

The contract models (``models.py``), the codec's fast path (``plain.py`` compiles its
checks from those models), the link API and the offer definitions all use these
types and limits, so a value one edge accepts is a value every consumer accepts,
and a record that breaks them is refused when it is decoded (and dead-lettered by
the consumer that reads it) instead of failing deep inside a service.

Patterns are matched by pydantic-core's regex engine, where ``^...$`` means the whole
value (Python's ``re`` would let ``$`` match before a trailing newline).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import AfterValidator, Field

INT64_MAX: Final = (1 << 63) - 1
"""Every id and amount that is a number is an Avro ``long``."""

MAX_POINTS: Final = 1_000_000_000
"""The most points one command (or one offer's reward) moves. With it, no sum of a
member's commands can leave PostgreSQL's ``bigint`` for nine billion commands."""

MAX_BUDGET: Final = 1_000_000_000_000
"""The largest total budget an offer can have."""

MAX_COUNTER_STEP: Final = 1_000_000
"""The most one ``CounterIncrement`` adds (or takes, when negative)."""

MAX_TEXT: Final = 1000
"""Characters in a free-text field (a reason, a message parameter's value)."""

MAX_NAME: Final = 200
"""Characters in a display name (an offer's ``name``): a name is a command's ``reason``
when its action gives none, and a message's ``{offer_name}``."""

MAX_PARAMS: Final = 32
"""Parameters of one message (``SendMessage.params``), the implicit ``points`` included."""

MAX_PARAM_NAME: Final = 64
"""Characters in a message parameter's name; its value is ``Text`` (``MAX_TEXT``)."""

MAX_MEMBER_ID: Final = 128
MAX_IDENT: Final = 255

EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
"""Contract times lie in ``[EARLIEST, LATEST)``: a post dated 9999-12-31 is bad data,
and date arithmetic near the ends of ``datetime`` overflows."""

MEMBER_ID_PATTERN: Final = rf"^[A-Za-z0-9._:@-]{{1,{MAX_MEMBER_ID}}}$"
NUMERIC_ID_PATTERN: Final = r"^[1-9][0-9]{0,18}$"
APPLE_ID_PATTERN: Final = r"^[A-Za-z0-9._-]{1,255}$"
SOCIAL_USER_ID_PATTERN: Final = APPLE_ID_PATTERN
"""Any network's user id; ``check_social_user_id`` narrows it per network."""
IDENT_PATTERN: Final = rf"^[A-Za-z0-9._:@-]{{1,{MAX_IDENT}}}$"
"""Ids we or a network mint: event, command, offer, run and comment ids."""
NO_NUL_PATTERN: Final = r"^[^\x00]*$"


def in_time_range(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"time {value.isoformat()} is outside [{EARLIEST.year}, {LATEST.year})")
    return value


MemberId = Annotated[str, Field(pattern=MEMBER_ID_PATTERN)]
"""A member of the loyalty program: 1-128 of ``A-Z a-z 0-9 . _ : @ -``."""

SocialUserId = Annotated[str, Field(pattern=SOCIAL_USER_ID_PATTERN)]
Ident = Annotated[str, Field(pattern=IDENT_PATTERN)]
Text = Annotated[str, Field(max_length=MAX_TEXT, pattern=NO_NUL_PATTERN)]
ParamName = Annotated[str, Field(max_length=MAX_PARAM_NAME, pattern=NO_NUL_PATTERN)]
Params = Annotated[dict[ParamName, Text], Field(max_length=MAX_PARAMS)]
"""A message's parameters: at most ``MAX_PARAMS``, each name at most ``MAX_PARAM_NAME``
characters, each value a ``Text``."""
PositiveId = Annotated[int, Field(ge=1, le=INT64_MAX)]
"""A group, post or user id of a network."""
PositiveIds = tuple[PositiveId, ...]
"""User ids of a snapshot (members, likers, reposters): each one an id that
``check_social_user_id`` accepts once it is an event's ``social_user_id``."""
NonNegativeId = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A network id where 0 means none yet (a group's highest post id before its first post)."""
Points = Annotated[int, Field(gt=0, le=MAX_POINTS)]
Budget = Annotated[int, Field(gt=0, le=MAX_BUDGET)]
CounterStep = Annotated[int, Field(ge=-MAX_COUNTER_STEP, le=MAX_COUNTER_STEP)]
InTimeRange = AfterValidator(in_time_range)


_NUMERIC_ID: Final = re.compile(NUMERIC_ID_PATTERN)
_APPLE_ID: Final = re.compile(APPLE_ID_PATTERN)


def check_social_user_id(network: str, social_user_id: str) -> str:
    """``social_user_id`` as ``network`` writes it, or ``ValueError``: vk and ok ids are
    canonical positive integers within int64 (``"4242"``, never ``"04242"``, ``"0"``,
    ``"-1"`` or ``"4242\\n"``), so one profile cannot be linked twice under two spellings.
    Every domain event's ``social_user_id`` is held to it (``model_base._Event``), as are
    the link API's and the read model's paths."""
    # fullmatch: the whole value, so ``$`` cannot match before a trailing newline.
    if network in ("vk", "ok"):
        if not (_NUMERIC_ID.fullmatch(social_user_id) and int(social_user_id) <= INT64_MAX):
            raise ValueError(
                f"social_user_id for {network} must be a positive integer up to {INT64_MAX}"
            )
        return social_user_id
    if not _APPLE_ID.fullmatch(social_user_id):
        raise ValueError(f"social_user_id for {network} must be 1-255 of A-Z a-z 0-9 . _ -")
    return social_user_id

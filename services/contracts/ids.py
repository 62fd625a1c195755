"""Deterministic ids: the same fact always gets the same id.

The detector can see a change twice (a redelivered snapshot, a replay) and the rules
can evaluate an event twice (a rebalance, a replay for a new offer). Because the ids
are a hash of *what* happened rather than *when we noticed*, downstream drops the
duplicate by id instead of crediting twice. The hash input is a JSON array, so no
choice of separator can make two different facts collide by concatenation.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

_ID_HEX_CHARS = 32  # 128 bits: collisions are not a practical concern at any volume we reach


def _digest(parts: list[object]) -> str:
    raw = json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(raw).hexdigest()[:_ID_HEX_CHARS]


def epoch_millis(moment: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (what timestamp-millis stores)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("naive datetime: give a time zone")
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def event_id(
    event_type: str,
    network: str,
    group_id: int | None,
    social_user_id: str,
    snapshot_at: datetime,
    *,
    post_id: int | None = None,
    comment_id: str | None = None,
) -> str:
    """Id of a domain event: type (record name, e.g. ``"PostLiked"``), network, group,
    user, object and the snapshot that revealed it. ``observed_at`` is deliberately left
    out: a replay observes later but is the same event."""
    short_type = event_type.rsplit(".", 1)[-1]
    return _digest(
        [
            "event",
            short_type,
            network,
            group_id,
            social_user_id,
            post_id,
            comment_id,
            epoch_millis(snapshot_at),
        ]
    )


def command_id(offer_id: str, event_id: str, action_index: int) -> str:
    """Id of the ``action_index``-th action an offer takes for an event: a replay or a
    redelivery of the same event under the same offer yields the same ids."""
    if action_index < 0:
        raise ValueError("action_index must be >= 0")
    return _digest(["command", offer_id, event_id, action_index])

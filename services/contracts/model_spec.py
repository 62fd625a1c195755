"""What the generator (``services.contracts.generate``) cannot read from the schemas.

- ``FIELD_TYPES``: the constraint type (``services.contracts.bounds``) of a field,
  where Avro's ``string`` or ``long`` says too little;
- ``RECORD_BASES``: the base class (``services.contracts.model_base``) a record gets,
  with its key and its helpers.

It imports nothing of the models, so the generator runs when they are missing or stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

_CHUNK: Final = {
    "group_id": "PositiveId",
    "run_id": "Ident",
    "post_id": "PositiveId",
    "baseline_post_id": "NonNegativeId",
}
_EVENT: Final = {
    "event_id": "Ident",
    "social_user_id": "SocialUserId",
    "group_id": "PositiveId",
    "post_id": "PositiveId",
    "comment_id": "Ident",
    "member_id": "MemberId",
}
_COMMAND: Final = {
    "command_id": "Ident",
    "member_id": "MemberId",
    "offer_id": "Ident",
    "source_event_id": "Ident",
    "reverses": "Ident",
    "template_id": "Ident",
    "name": "Ident",
    "points": "Points",
    "reason": "Text",
    "budget": "Budget",
    "by": "CounterStep",
}
_OUTCOME: Final = {"command_id": "Ident", "member_id": "MemberId"}

FIELD_TYPES: Final[Mapping[str, Mapping[str, str]]] = {
    "social_loyalty.snapshots": _CHUNK,
    "social_loyalty.snapshots.SnapshotKey": {},
    "social_loyalty.snapshots.SkippedObject": {},
    "social_loyalty.snapshots.Comment": {"comment_id": "Ident"},
    "social_loyalty.events": _EVENT,
    "social_loyalty.commands": _COMMAND,
    "social_loyalty.outcomes": _OUTCOME,
    "social_loyalty.deadletter": {},
}
"""Constraint types by record full name, else by namespace: field -> a type of
``services.contracts.bounds``. A field not named keeps its plain Avro type; a
``["null", X]`` field gets ``<type> | None``."""

RECORD_BASES: Final[Mapping[str, str]] = {
    "social_loyalty.snapshots": "_Chunk",
    "social_loyalty.snapshots.SnapshotKey": "_SnapshotKey",
    "social_loyalty.snapshots.MembersChunk": "_MembersChunk",
    "social_loyalty.snapshots.PostLikesChunk": "_LikesChunk",
    "social_loyalty.snapshots.PostRepostsChunk": "_RepostsChunk",
    "social_loyalty.snapshots.PostCommentsChunk": "_CommentsChunk",
    "social_loyalty.snapshots.RunManifest": "_Manifest",
    "social_loyalty.snapshots.Comment": "ContractModel",
    "social_loyalty.snapshots.SkippedObject": "ContractModel",
    "social_loyalty.events": "_Event",
    "social_loyalty.events.EventKey": "_EventKey",
    "social_loyalty.commands": "_Command",
    "social_loyalty.commands.MemberKey": "_MemberKey",
    "social_loyalty.outcomes": "_Outcome",
    "social_loyalty.deadletter": "_DeadLetter",
}
"""Base class (of this module) by record full name, else by namespace."""


def for_record(table: Mapping[str, Any], full_name: str) -> Any:
    """``table``'s entry for the record ``full_name``, else for its namespace."""
    if full_name in table:
        return table[full_name]
    return table[full_name.rsplit(".", 1)[0]]

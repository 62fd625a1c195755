"""What the generator (``services.contracts.generate``) cannot read from the schemas.

- ``FIELD_TYPES``: the constraint type (``services.contracts.bounds``) of a field,
  where Avro's ``string`` or ``long`` says too little;
- ``RECORD_BASES``: the base class (``services.contracts.model_base``) a record gets,
  with its key and its helpers.

A new record needs an entry here (its own or its namespace's) in both tables: the
generator refuses a record neither names, and a name in ``FIELD_TYPES`` that no record
of its scope has. A new record in a namespace gets that namespace's base: check that
the base's methods fit it (``_Chunk.key`` must be overridden, for example).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

BOUND_BASES: Final[Mapping[str, str]] = {
    "Ident": "str",
    "MemberId": "str",
    "SocialUserId": "str",
    "Text": "str",
    "Params": "dict[str, str]",
    "PositiveId": "int",
    "PositiveIds": "tuple[int, ...]",
    "NonNegativeId": "int",
    "Points": "int",
    "Budget": "int",
    "CounterStep": "int",
}
"""The Python type each constraint type of ``services.contracts.bounds`` narrows: the
generator refuses one on a field whose Avro type maps to another."""

_CHUNK: Final = {
    "group_id": "PositiveId",
    "run_id": "Ident",
    "post_id": "PositiveId",
    "baseline_post_id": "NonNegativeId",
    "member_ids": "PositiveIds",
    "user_ids": "PositiveIds",
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
    "params": "Params",
    "budget": "Budget",
    "by": "CounterStep",
}
_OUTCOME: Final = {"command_id": "Ident", "member_id": "MemberId"}

FIELD_TYPES: Final[Mapping[str, Mapping[str, str]]] = {
    "social_loyalty.snapshots": _CHUNK,
    "social_loyalty.snapshots.SnapshotKey": {},
    "social_loyalty.snapshots.SkippedObject": {},
    "social_loyalty.snapshots.Comment": {"comment_id": "Ident", "author_id": "PositiveId"},
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

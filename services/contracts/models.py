"""The contract models: frozen pydantic records of ``schemas/*.avsc``, their enums, the
unions the services hold them by and the registries the codec finds them in.

The records and enums are generated from the schemas (``schema_records.py``, ``schema_enums.py``:
``python -m services.contracts.generate``); their keys and helpers are the hand-written
bases of ``model_base.py``. Import them from here or from ``services.contracts``.
"""

from __future__ import annotations

from typing import Any

from services.contracts.model_base import ContractModel, UtcMillis
from services.contracts.schema_enums import Channel, Facet, Network
from services.contracts.schema_records import (
    BonusAccrue,
    BonusDeduct,
    Comment,
    CommentDeleted,
    CommentPosted,
    CounterChanged,
    CounterIncrement,
    DeadLetter,
    EventKey,
    GroupJoined,
    GroupLeft,
    MailingSet,
    MemberKey,
    MembersChunk,
    MessageFailed,
    MessageSent,
    PointsCredited,
    PointsDeducted,
    PostCommentsChunk,
    PostLiked,
    PostLikesChunk,
    PostReposted,
    PostRepostsChunk,
    PostUnliked,
    ProfileLinked,
    ProfileUnlinked,
    RepostDeleted,
    RunManifest,
    SendMessage,
    SkippedObject,
    SnapshotKey,
    SubscriptionChanged,
)

__all__ = [
    "COMMAND_TYPES",
    "EVENT_TYPES",
    "KEY_TYPES",
    "OUTCOME_TYPES",
    "RECORD_TYPES",
    "SNAPSHOT_TYPES",
    "BonusAccrue",
    "BonusDeduct",
    "Channel",
    "Command",
    "Comment",
    "CommentDeleted",
    "CommentPosted",
    "ContractModel",
    "CounterChanged",
    "CounterIncrement",
    "DeadLetter",
    "DomainEvent",
    "EventKey",
    "Facet",
    "GroupJoined",
    "GroupLeft",
    "KeyRecord",
    "MailingSet",
    "MemberKey",
    "MembersChunk",
    "MessageFailed",
    "MessageSent",
    "Network",
    "Outcome",
    "PointsCredited",
    "PointsDeducted",
    "PostCommentsChunk",
    "PostLiked",
    "PostLikesChunk",
    "PostReposted",
    "PostRepostsChunk",
    "PostUnliked",
    "ProfileLinked",
    "ProfileUnlinked",
    "Record",
    "RepostDeleted",
    "RunManifest",
    "SendMessage",
    "SkippedObject",
    "SnapshotChunk",
    "SnapshotKey",
    "SubscriptionChanged",
    "UtcMillis",
]


# ----------------------------------------------------------------------- registry

SnapshotChunk = MembersChunk | PostLikesChunk | PostRepostsChunk | PostCommentsChunk | RunManifest
DomainEvent = (
    ProfileLinked
    | ProfileUnlinked
    | GroupJoined
    | GroupLeft
    | PostLiked
    | PostUnliked
    | CommentPosted
    | CommentDeleted
    | PostReposted
    | RepostDeleted
)
Command = BonusAccrue | BonusDeduct | SendMessage | CounterIncrement | MailingSet
Outcome = (
    PointsCredited
    | PointsDeducted
    | MessageSent
    | MessageFailed
    | SubscriptionChanged
    | CounterChanged
)
KeyRecord = SnapshotKey | EventKey | MemberKey
Record = SnapshotChunk | DomainEvent | Command | Outcome | DeadLetter | KeyRecord
"""Every top-level record of ``schemas/``: what the codec encodes and decodes."""


def _by_name(*classes: type[ContractModel]) -> dict[str, type[Any]]:
    return {cls.avro_name: cls for cls in classes}


SNAPSHOT_TYPES: dict[str, type[SnapshotChunk]] = _by_name(
    MembersChunk, PostLikesChunk, PostRepostsChunk, PostCommentsChunk, RunManifest
)
EVENT_TYPES: dict[str, type[DomainEvent]] = _by_name(
    ProfileLinked,
    ProfileUnlinked,
    GroupJoined,
    GroupLeft,
    PostLiked,
    PostUnliked,
    CommentPosted,
    CommentDeleted,
    PostReposted,
    RepostDeleted,
)
COMMAND_TYPES: dict[str, type[Command]] = _by_name(
    BonusAccrue, BonusDeduct, SendMessage, CounterIncrement, MailingSet
)
OUTCOME_TYPES: dict[str, type[Outcome]] = _by_name(
    PointsCredited, PointsDeducted, MessageSent, MessageFailed, SubscriptionChanged, CounterChanged
)
KEY_TYPES: dict[str, type[KeyRecord]] = _by_name(SnapshotKey, EventKey, MemberKey)
RECORD_TYPES: dict[str, type[Record]] = {
    **SNAPSHOT_TYPES,
    **EVENT_TYPES,
    **COMMAND_TYPES,
    **OUTCOME_TYPES,
    DeadLetter.avro_name: DeadLetter,
    **KEY_TYPES,
}
"""Avro full name -> model, for every ``schemas/*.avsc``."""

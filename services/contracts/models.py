"""Frozen pydantic models mirroring ``schemas/*.avsc`` one to one.

The ``.avsc`` files are the contract other teams read; these models are how our own
services hold the same records. ``tests/unit/contracts/test_models_match_schemas.py``
walks every schema and every model and fails on any difference in names, types,
optionality or defaults, so the two cannot drift apart silently.

Timestamps are aware UTC datetimes truncated to milliseconds: that is all
``timestamp-millis`` can carry, and truncating on the way in makes a model equal to
itself after an encode/decode round trip. Naive datetimes are refused, because a
naive time in a distributed system is a bug waiting for a different time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.contracts.bounds import (
    INT64_MAX,
    Budget,
    CounterStep,
    Ident,
    InTimeRange,
    MemberId,
    Points,
    PositiveId,
    SocialUserId,
    Text,
)
from services.contracts.ids import event_id as compute_event_id


def _utc_millis(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: give a time zone (contract times are UTC)")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


UtcMillis = Annotated[datetime, AfterValidator(_utc_millis), InTimeRange]
"""An Avro ``timestamp-millis``: aware, UTC, millisecond precision, within
``bounds.EARLIEST`` and ``bounds.LATEST``."""


class Network(StrEnum):
    """Avro enum ``social_loyalty.Network``."""

    VK = "vk"
    OK = "ok"
    APPLE = "apple"


class Channel(StrEnum):
    """Avro enum ``social_loyalty.Channel``."""

    SMS = "sms"
    EMAIL = "email"
    PUSH = "push"
    VIBER = "viber"


class Facet(StrEnum):
    """Avro enum ``social_loyalty.snapshots.Facet``: what a snapshot chunk holds."""

    MEMBERS = "members"
    LIKES = "likes"
    REPOSTS = "reposts"
    COMMENTS = "comments"
    MANIFEST = "manifest"


class ContractModel(BaseModel):
    """Base of every contract record; ``avro_name`` is the Avro full name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    avro_name: ClassVar[str] = ""

    def to_avro(self) -> dict[str, Any]:
        """The dict fastavro writes (enums as their str values, datetimes as is)."""
        return self.model_dump()


def _key(*parts: object) -> bytes:
    return ":".join(str(part) for part in parts).encode()


# --------------------------------------------------------------------------- keys


class SnapshotKey(ContractModel):
    """Key of ``social.snapshots``; on the wire ``network:group_id:facet:bucket`` (UTF-8)."""

    avro_name: ClassVar[str] = "social_loyalty.snapshots.SnapshotKey"

    network: Network
    group_id: int
    facet: Facet
    bucket: int

    def to_bytes(self) -> bytes:
        return _key(self.network.value, self.group_id, self.facet.value, self.bucket)

    @classmethod
    def parse(cls, raw: bytes) -> Self:
        network, group_id, facet, bucket = raw.decode().split(":")
        return cls(
            network=Network(network), group_id=int(group_id), facet=Facet(facet), bucket=int(bucket)
        )


class EventKey(ContractModel):
    """Key of ``social.events``; on the wire ``network:social_user_id`` (UTF-8), so every
    event of one social user (link first, then activity) is in one partition, in order."""

    avro_name: ClassVar[str] = "social_loyalty.events.EventKey"

    network: Network
    social_user_id: SocialUserId

    def to_bytes(self) -> bytes:
        return _key(self.network.value, self.social_user_id)

    @classmethod
    def parse(cls, raw: bytes) -> Self:
        network, social_user_id = raw.decode().split(":", 1)
        return cls(network=Network(network), social_user_id=social_user_id)


class MemberKey(ContractModel):
    """Key of ``loyalty.commands.*`` and ``loyalty.outcomes``: the UTF-8 member id."""

    avro_name: ClassVar[str] = "social_loyalty.commands.MemberKey"

    member_id: MemberId

    def to_bytes(self) -> bytes:
        return self.member_id.encode()

    @classmethod
    def parse(cls, raw: bytes) -> Self:
        return cls(member_id=raw.decode())


# ---------------------------------------------------------------------- snapshots


class _Chunk(ContractModel):
    network: Network
    group_id: PositiveId
    run_id: Ident
    snapshot_at: UtcMillis
    baseline_at: UtcMillis

    @property
    def is_baseline(self) -> bool:
        """The group's first complete collection: the detector emits nothing for it."""
        return self.snapshot_at == self.baseline_at

    def key(self) -> SnapshotKey:
        raise NotImplementedError


class MembersChunk(_Chunk):
    avro_name: ClassVar[str] = "social_loyalty.snapshots.MembersChunk"

    bucket: int
    bucket_count: int
    member_ids: tuple[int, ...]

    def key(self) -> SnapshotKey:
        return SnapshotKey(
            network=self.network, group_id=self.group_id, facet=Facet.MEMBERS, bucket=self.bucket
        )


class _PostChunk(_Chunk):
    post_id: PositiveId
    posted_at: UtcMillis
    baseline_post_id: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = None
    """Highest post id at the group's baseline: a higher ``post_id`` is a new post."""
    facet: ClassVar[Facet]

    def key(self) -> SnapshotKey:
        return SnapshotKey(
            network=self.network, group_id=self.group_id, facet=self.facet, bucket=self.post_id
        )


class PostLikesChunk(_PostChunk):
    avro_name: ClassVar[str] = "social_loyalty.snapshots.PostLikesChunk"
    facet: ClassVar[Facet] = Facet.LIKES

    user_ids: tuple[int, ...]


class PostRepostsChunk(_PostChunk):
    avro_name: ClassVar[str] = "social_loyalty.snapshots.PostRepostsChunk"
    facet: ClassVar[Facet] = Facet.REPOSTS

    user_ids: tuple[int, ...]


class Comment(ContractModel):
    avro_name: ClassVar[str] = "social_loyalty.snapshots.Comment"

    comment_id: Ident
    author_id: int


class PostCommentsChunk(_PostChunk):
    avro_name: ClassVar[str] = "social_loyalty.snapshots.PostCommentsChunk"
    facet: ClassVar[Facet] = Facet.COMMENTS

    comments: tuple[Comment, ...]


class SkippedObject(ContractModel):
    avro_name: ClassVar[str] = "social_loyalty.snapshots.SkippedObject"

    facet: str
    post_id: int | None = None
    reason: str


class RunManifest(_Chunk):
    avro_name: ClassVar[str] = "social_loyalty.snapshots.RunManifest"

    bucket_count: int
    post_ids: tuple[int, ...]
    chunk_count: int
    complete: bool = True
    skipped: tuple[SkippedObject, ...] = ()

    def key(self) -> SnapshotKey:
        return SnapshotKey(
            network=self.network, group_id=self.group_id, facet=Facet.MANIFEST, bucket=0
        )


# ------------------------------------------------------------------------- events


class _Event(ContractModel):
    event_id: Ident
    network: Network
    social_user_id: SocialUserId
    observed_at: UtcMillis
    snapshot_at: UtcMillis

    def key(self) -> EventKey:
        return EventKey(network=self.network, social_user_id=self.social_user_id)

    @classmethod
    def build(cls, **fields: Any) -> Self:
        """Make the event with its deterministic ``event_id`` computed from ``fields``."""
        snapshot_at = _utc_millis(fields["snapshot_at"])
        fields["event_id"] = compute_event_id(
            cls.__name__,
            Network(fields["network"]).value,
            fields.get("group_id"),
            str(fields["social_user_id"]),
            snapshot_at,
            post_id=fields.get("post_id"),
            comment_id=fields.get("comment_id"),
        )
        return cls(**fields)


class _LinkEvent(_Event):
    group_id: PositiveId | None = None
    member_id: MemberId
    registration: bool
    previous_snapshot_at: UtcMillis | None = None


class _GroupEvent(_Event):
    group_id: PositiveId
    previous_snapshot_at: UtcMillis


class ProfileLinked(_LinkEvent):
    avro_name: ClassVar[str] = "social_loyalty.events.ProfileLinked"


class ProfileUnlinked(_LinkEvent):
    avro_name: ClassVar[str] = "social_loyalty.events.ProfileUnlinked"


class GroupJoined(_GroupEvent):
    avro_name: ClassVar[str] = "social_loyalty.events.GroupJoined"


class GroupLeft(_GroupEvent):
    avro_name: ClassVar[str] = "social_loyalty.events.GroupLeft"


class PostLiked(_GroupEvent):
    avro_name: ClassVar[str] = "social_loyalty.events.PostLiked"

    post_id: PositiveId


class PostUnliked(_GroupEvent):
    avro_name: ClassVar[str] = "social_loyalty.events.PostUnliked"

    post_id: PositiveId


class CommentPosted(_GroupEvent):
    avro_name: ClassVar[str] = "social_loyalty.events.CommentPosted"

    post_id: PositiveId
    comment_id: Ident


class CommentDeleted(_GroupEvent):
    avro_name: ClassVar[str] = "social_loyalty.events.CommentDeleted"

    post_id: PositiveId
    comment_id: Ident


class PostReposted(_GroupEvent):
    avro_name: ClassVar[str] = "social_loyalty.events.PostReposted"

    post_id: PositiveId


class RepostDeleted(_GroupEvent):
    avro_name: ClassVar[str] = "social_loyalty.events.RepostDeleted"

    post_id: PositiveId


# ----------------------------------------------------------------------- commands


class _Command(ContractModel):
    command_id: Ident
    member_id: MemberId
    offer_id: Ident
    source_event_id: Ident
    replay: bool = False
    issued_at: UtcMillis

    def key(self) -> MemberKey:
        return MemberKey(member_id=self.member_id)


class _Bonus(_Command):
    points: Points
    reason: Text
    reverses: Ident | None = None


class BonusAccrue(_Bonus):
    avro_name: ClassVar[str] = "social_loyalty.commands.BonusAccrue"

    budget: Budget | None = None


class BonusDeduct(_Bonus):
    avro_name: ClassVar[str] = "social_loyalty.commands.BonusDeduct"


class SendMessage(_Command):
    avro_name: ClassVar[str] = "social_loyalty.commands.SendMessage"

    channel: Channel
    template_id: Ident
    params: dict[str, str] = Field(default_factory=dict)
    marketing: bool


class CounterIncrement(_Command):
    avro_name: ClassVar[str] = "social_loyalty.commands.CounterIncrement"

    name: Ident
    by: CounterStep


class MailingSet(_Command):
    avro_name: ClassVar[str] = "social_loyalty.commands.MailingSet"

    channel: Channel
    enabled: bool


# ----------------------------------------------------------------------- outcomes


class _Outcome(ContractModel):
    command_id: Ident
    member_id: MemberId
    occurred_at: UtcMillis

    def key(self) -> MemberKey:
        return MemberKey(member_id=self.member_id)


class PointsCredited(_Outcome):
    avro_name: ClassVar[str] = "social_loyalty.outcomes.PointsCredited"

    points: int
    balance: int


class PointsDeducted(_Outcome):
    avro_name: ClassVar[str] = "social_loyalty.outcomes.PointsDeducted"

    points: int
    balance: int


class MessageSent(_Outcome):
    avro_name: ClassVar[str] = "social_loyalty.outcomes.MessageSent"

    channel: Channel
    template_id: str
    provider_message_id: str | None = None


class MessageFailed(_Outcome):
    avro_name: ClassVar[str] = "social_loyalty.outcomes.MessageFailed"

    channel: Channel
    template_id: str
    reason: str
    attempts: int


class SubscriptionChanged(_Outcome):
    avro_name: ClassVar[str] = "social_loyalty.outcomes.SubscriptionChanged"

    channel: Channel
    enabled: bool


class CounterChanged(_Outcome):
    avro_name: ClassVar[str] = "social_loyalty.outcomes.CounterChanged"

    name: str
    by: int
    value: int


# -------------------------------------------------------------------- dead letter


class DeadLetter(ContractModel):
    """A message a consumer gave up on, with the reason; produced with the original key."""

    avro_name: ClassVar[str] = "social_loyalty.deadletter.DeadLetter"

    original_topic: str
    original_partition: int
    original_offset: int
    key: bytes | None = None
    value: bytes | None = None
    error_class: str
    reason: str
    consumer_group: str | None = None
    failed_at: UtcMillis

    @classmethod
    def for_error(
        cls,
        error: BaseException,
        *,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        consumer_group: str | None = None,
        failed_at: datetime | None = None,
    ) -> Self:
        """The dead letter for a message that raised ``error`` (its ``reason`` when it
        has one, e.g. ``DecodeError``), so every consumer reports failures the same way."""
        kind = type(error)
        return cls(
            original_topic=topic,
            original_partition=partition,
            original_offset=offset,
            key=key,
            value=value,
            error_class=f"{kind.__module__}.{kind.__qualname__}",
            reason=str(getattr(error, "reason", None) or error) or kind.__name__,
            consumer_group=consumer_group,
            failed_at=failed_at or datetime.now(UTC),
        )

    @classmethod
    def for_message(cls, error: BaseException, message: Any, consumer_group: str) -> Self:
        """``for_error`` for a consumed confluent-kafka ``Message`` (anything with its
        ``topic()``, ``partition()``, ``offset()``, ``key()`` and ``value()``)."""
        return cls.for_error(
            error,
            topic=str(message.topic()),
            partition=int(message.partition()),
            offset=int(message.offset()),
            key=message.key(),
            value=message.value(),
            consumer_group=consumer_group,
        )


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

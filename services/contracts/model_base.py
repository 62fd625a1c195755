"""What the contract models are beyond their fields, written by hand.

``services/contracts/schema_records.py`` and ``schema_enums.py`` are generated from
``schemas/*.avsc`` (``python -m services.contracts.generate``): the schemas are the
one source of truth for names, field order, types, optionality, defaults and docs.
This module holds the base classes the generated records get (``model_spec`` says
which): a record's key and its helpers. A base declares the fields its methods read
for the type checker only (``TYPE_CHECKING``); the generated class declares every
field, in the schema's order.

Timestamps are aware UTC datetimes truncated to milliseconds: that is all
``timestamp-millis`` can carry, and truncating on the way in makes a model equal to
itself after an encode/decode round trip. Naive datetimes are refused, because a
naive time in a distributed system is a bug waiting for a different time zone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Self, TypeVar, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

from services.contracts.bounds import InTimeRange, check_social_user_id
from services.contracts.ids import event_id as compute_event_id
from services.contracts.schema_enums import Facet, Network


def _utc_millis(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("naive datetime: give a time zone (contract times are UTC)")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


UtcMillis = Annotated[datetime, AfterValidator(_utc_millis), InTimeRange]
"""An Avro ``timestamp-millis``: aware, UTC, millisecond precision, within
``bounds.EARLIEST`` and ``bounds.LATEST``."""


@dataclass(frozen=True)
class CrossCheck:
    """A rule over several fields of one record, which a field's own constraint cannot
    see: ``check(*values of fields)`` raises ``ValueError``. The model runs it once its
    fields are valid; the codec's plain path (``plain.py``) runs the same function on
    plain values, so both refuse the same records."""

    fields: tuple[str, ...]
    check: Callable[..., object]


CROSS_CHECKS_VALIDATOR: Final = "_run_cross_checks"
"""The one model validator ``plain.py`` mirrors: the one that runs ``cross_checks``."""


# ------------------------------------------------------------------ base classes


class ContractModel(BaseModel):
    """Base of every contract record; ``avro_name`` is the Avro full name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    avro_name: ClassVar[str] = ""

    def to_avro(self) -> dict[str, Any]:
        """The dict fastavro writes (enums as their str values, datetimes as is)."""
        return self.model_dump()


_Base = TypeVar("_Base", bound=ContractModel)


_RECORDS: dict[type[ContractModel], type[ContractModel]] = {}


def _record_of(base: type[_Base]) -> type[_Base]:
    """The generated record built on ``base`` (a key's record, for the ``key()`` of the
    records it keys): found once among the base's subclasses, not imported per call."""
    record = _RECORDS.get(base)
    if record is None:
        (record,) = base.__subclasses__()
        _RECORDS[base] = record
    return cast(type[_Base], record)


def _key(*parts: object) -> bytes:
    return ":".join(str(part) for part in parts).encode()


class _SnapshotKey(ContractModel):
    """On the wire ``network:group_id:facet:bucket`` (UTF-8)."""

    if TYPE_CHECKING:
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


class _EventKey(ContractModel):
    """On the wire ``network:social_user_id`` (UTF-8), so every event of one social
    user (link first, then activity) is in one partition, in order."""

    if TYPE_CHECKING:
        network: Network
        social_user_id: str

    def to_bytes(self) -> bytes:
        return _key(self.network.value, self.social_user_id)

    @classmethod
    def parse(cls, raw: bytes) -> Self:
        network, social_user_id = raw.decode().split(":", 1)
        return cls(network=Network(network), social_user_id=social_user_id)


class _MemberKey(ContractModel):
    """On the wire the UTF-8 member id."""

    if TYPE_CHECKING:
        member_id: str

    def to_bytes(self) -> bytes:
        return self.member_id.encode()

    @classmethod
    def parse(cls, raw: bytes) -> Self:
        return cls(member_id=raw.decode())


class _Chunk(ContractModel):
    if TYPE_CHECKING:
        network: Network
        group_id: int
        snapshot_at: datetime
        baseline_at: datetime

    @property
    def is_baseline(self) -> bool:
        """The group's first complete collection: the detector emits nothing for it."""
        return self.snapshot_at == self.baseline_at

    def key(self) -> _SnapshotKey:
        raise NotImplementedError

    def _key_at(self, facet: Facet, bucket: int) -> _SnapshotKey:
        return _record_of(_SnapshotKey)(
            network=self.network, group_id=self.group_id, facet=facet, bucket=bucket
        )


class _MembersChunk(_Chunk):
    if TYPE_CHECKING:
        bucket: int

    def key(self) -> _SnapshotKey:
        return self._key_at(Facet.MEMBERS, self.bucket)


class _PostChunk(_Chunk):
    facet: ClassVar[Facet]

    if TYPE_CHECKING:
        post_id: int

    def key(self) -> _SnapshotKey:
        return self._key_at(self.facet, self.post_id)


class _LikesChunk(_PostChunk):
    facet: ClassVar[Facet] = Facet.LIKES


class _RepostsChunk(_PostChunk):
    facet: ClassVar[Facet] = Facet.REPOSTS


class _CommentsChunk(_PostChunk):
    facet: ClassVar[Facet] = Facet.COMMENTS


class _Manifest(_Chunk):
    def key(self) -> _SnapshotKey:
        return self._key_at(Facet.MANIFEST, 0)


class _CrossChecked(ContractModel):
    cross_checks: ClassVar[tuple[CrossCheck, ...]] = ()

    @model_validator(mode="after")
    def _run_cross_checks(self) -> Self:
        for rule in self.cross_checks:
            rule.check(*(getattr(self, name) for name in rule.fields))
        return self


class _Event(_CrossChecked):
    """``social_user_id`` is held to its network's bound (a vk or ok id is a canonical
    positive integer), as the link API holds it: an event for user ``"-1"`` or ``"0"`` is
    refused when it is built and when it is decoded."""

    cross_checks: ClassVar[tuple[CrossCheck, ...]] = (
        CrossCheck(("network", "social_user_id"), check_social_user_id),
    )

    if TYPE_CHECKING:
        network: Network
        social_user_id: str

    def key(self) -> _EventKey:
        return _record_of(_EventKey)(network=self.network, social_user_id=self.social_user_id)

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


class _ForMember(ContractModel):
    if TYPE_CHECKING:
        member_id: str

    def key(self) -> _MemberKey:
        return _record_of(_MemberKey)(member_id=self.member_id)


class _Command(_ForMember):
    pass


class _Outcome(_ForMember):
    pass


class _DeadLetter(ContractModel):
    """Produced with the original key."""

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
        return cls.model_validate(
            {
                "original_topic": topic,
                "original_partition": partition,
                "original_offset": offset,
                "key": key,
                "value": value,
                "error_class": f"{kind.__module__}.{kind.__qualname__}",
                "reason": str(getattr(error, "reason", None) or error) or kind.__name__,
                "consumer_group": consumer_group,
                "failed_at": failed_at or datetime.now(UTC),
            }
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

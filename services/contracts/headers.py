"""Kafka headers on every domain event, command and outcome: what it is without decoding it.

The headers follow the CloudEvents Kafka protocol binding (binary content mode), so a
consumer can route, filter or log a record by its headers alone, with any CloudEvents
SDK or none:

====================== ==================================================================
``ce_specversion``     ``1.0``
``ce_id``              the event id (``event_id``; a command's or outcome's ``command_id``)
``ce_type``            the Avro full name, e.g. ``social_loyalty.events.PostLiked``
``ce_source``          ``social-loyalty/<producer>``: ``detector``, ``link-api``, ``rules``,
                       ``replay``, ``actions``
``ce_time``            when it happened, RFC 3339 in UTC with milliseconds: an event's
                       ``observed_at``, a command's ``issued_at``, an outcome's
                       ``occurred_at``
``ce_avrofingerprint`` the writer schema's CRC-64-AVRO fingerprint, 16 hex digits (the same
                       8 bytes the single-object encoding carries after ``C3 01``)
``content-type``       ``application/avro``
====================== ==================================================================

Headers are a convenience for routing; the value stays the source of truth (its own
framing names the schema).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from services.contracts.models import RECORD_TYPES, ContractModel
from services.contracts.schemas import default_schema_set

__all__ = [
    "CONTENT_TYPE",
    "Headers",
    "contract_headers",
    "full_name",
    "headers_for",
    "headers_or_none",
]

Headers = list[tuple[str, str | bytes | None]]
"""As confluent-kafka takes them (our values are always bytes)."""
CONTENT_TYPE = "application/avro"
_TIME_FIELDS = ("observed_at", "issued_at", "occurred_at")
_ID_FIELDS = ("event_id", "command_id")


def _rfc3339(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def headers_or_none(record: ContractModel, source: str) -> Headers | None:
    """``contract_headers``, or ``None`` for a record that is not an event, a command or
    an outcome (a dead letter, a snapshot chunk)."""
    ident = next((getattr(record, f) for f in _ID_FIELDS if hasattr(record, f)), None)
    moment = next((getattr(record, f) for f in _TIME_FIELDS if hasattr(record, f)), None)
    if not record.avro_name or ident is None or moment is None:
        return None
    return headers_for(record.avro_name, str(ident), moment, source)


def contract_headers(record: ContractModel, source: str) -> Headers:
    """The headers of ``record`` as written by ``source`` (``detector``, ``rules``, ...).

    Raises ``ValueError`` for a record that is not an event, a command or an outcome
    (it has no id or time to put in them)."""
    headers = headers_or_none(record, source)
    if headers is None:
        raise ValueError(f"{type(record).__name__} is not an event, a command or an outcome")
    return headers


@cache
def _fingerprint_hex(name: str) -> bytes:
    return default_schema_set().fingerprints[name].hex().encode()


@cache
def full_name(short: str) -> str:
    """``BonusAccrue`` -> ``social_loyalty.commands.BonusAccrue``."""
    (name,) = (n for n in RECORD_TYPES if n.rsplit(".", 1)[-1] == short)
    return name


def headers_for(name: str, ident: str, moment: datetime, source: str) -> Headers:
    """The headers of a record of Avro full name ``name`` given as plain values (the
    rules worker's hot path encodes dicts, not models)."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", ident.encode()),
        ("ce_type", name.encode()),
        ("ce_source", f"social-loyalty/{source}".encode()),
        ("ce_time", _rfc3339(moment).encode()),
        ("ce_avrofingerprint", _fingerprint_hex(name)),
        ("content-type", CONTENT_TYPE.encode()),
    ]

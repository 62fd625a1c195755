"""Snapshot user ids and events' ``social_user_id`` carry the one bound of a social user
id (``bounds.check_social_user_id``): a vk or ok user is a canonical positive integer.

A ``MembersChunk`` with members ``-1`` and ``0`` made the detector write ``GroupJoined``
and ``GroupLeft`` for users "-1" and "0" onto the log kept forever. Such a chunk, or
such an event, is refused when it is built, encoded and decoded, on both codec paths,
so the consumer that reads it dead-letters it (``DecodeError``)."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from pydantic import ValidationError

from services.contracts.bounds import INT64_MAX
from services.contracts.codec import DecodeError, SingleObjectCodec
from services.contracts.examples import all_records
from services.contracts.models import ContractModel, Network, ProfileLinked

SINGLE = SingleObjectCodec()
TOPIC = "unit.social-user-bounds"


def _example(name: str) -> ContractModel:
    return next(r for r in all_records() if type(r).__name__ == name)


def _written(record: ContractModel, value: dict[str, Any]) -> bytes:
    """``value`` as a single-object message of ``record``'s type, written by fastavro
    alone (no model, no check): what a broken or hostile producer can put on a topic."""
    buffer = io.BytesIO()
    buffer.write(b"\xc3\x01" + SINGLE.schemas.fingerprints[record.avro_name])
    fastavro.schemaless_writer(buffer, SINGLE.schemas.current[record.avro_name], value)
    return buffer.getvalue()


def _refused_everywhere(record: ContractModel, change: dict[str, Any], reason: str) -> None:
    name = type(record).__name__
    value = {**record.to_avro(), **change}
    with pytest.raises(ValidationError, match=reason):
        type(record).model_validate(value)
    with pytest.raises(ValueError, match=reason):
        SINGLE.encode_plain(name, value)
    data = _written(record, value)
    with pytest.raises(DecodeError, match=reason):
        SINGLE.decode(data)
    with pytest.raises(DecodeError, match=reason):
        SINGLE.decode_plain(data, TOPIC)


CHUNK_IDS = [
    ("MembersChunk", {"member_ids": [-1, 0]}),
    ("MembersChunk", {"member_ids": [0, 3]}),
    ("MembersChunk", {"member_ids": [-1]}),
    ("PostLikesChunk", {"user_ids": [-42, 7]}),
    ("PostRepostsChunk", {"user_ids": [0]}),
    ("PostCommentsChunk", {"comments": [{"comment_id": "c-1", "author_id": -42}]}),
]


@pytest.mark.parametrize(("name", "change"), CHUNK_IDS)
def test_a_snapshot_user_id_below_one_is_refused(name: str, change: dict[str, Any]) -> None:
    _refused_everywhere(_example(name), change, "greater than or equal to 1")


def test_a_snapshot_with_positive_user_ids_up_to_int64_is_taken() -> None:
    record = _example("MembersChunk")
    value = {**record.to_avro(), "member_ids": [1, 2, INT64_MAX]}
    data = _written(record, value)
    assert SINGLE.decode(data) == type(record).model_validate(value)
    assert SINGLE.decode_plain(data, TOPIC)[1]["member_ids"] == [1, 2, INT64_MAX]


EVENTS = ["GroupJoined", "GroupLeft", "PostLiked", "CommentPosted", "ProfileLinked"]


@pytest.mark.parametrize("name", EVENTS)
@pytest.mark.parametrize("network", ["vk", "ok"])
@pytest.mark.parametrize("user", ["-1", "0", "042", "u1", "1.5", str(INT64_MAX + 1)])
def test_an_event_for_a_user_its_network_cannot_have_is_refused(
    name: str, network: str, user: str
) -> None:
    change = {"network": network, "social_user_id": user}
    _refused_everywhere(_example(name), change, f"social_user_id for {network}")


def test_an_event_is_refused_when_it_is_built_too() -> None:
    record = _example("GroupJoined")
    fields = record.model_dump(exclude={"event_id"})
    with pytest.raises(ValidationError, match="social_user_id for vk"):
        type(record).build(**{**fields, "social_user_id": "-1"})  # type: ignore[attr-defined]
    built = type(record).build(**{**fields, "social_user_id": "1"})  # type: ignore[attr-defined]
    assert built.social_user_id == "1"


@pytest.mark.parametrize(
    ("network", "user"), [("vk", "1"), ("ok", str(INT64_MAX)), ("apple", "001234.ab.0042")]
)
def test_an_event_for_a_user_of_its_network_is_taken(network: str, user: str) -> None:
    record = _example("ProfileLinked")
    assert isinstance(record, ProfileLinked)
    value = {**record.to_avro(), "network": network, "social_user_id": user}
    model = ProfileLinked.model_validate(value)
    assert model.network is Network(network)
    data = SINGLE.encode_plain("ProfileLinked", value)
    assert data == SINGLE.encode(model)
    assert SINGLE.decode(data) == model
    assert SINGLE.decode_plain(data, TOPIC)[1]["social_user_id"] == user

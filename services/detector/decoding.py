"""Snapshot decoding at the speed a 62,500-member chunk needs, with the codec's exact outcome.

The contract codec reads single-object bodies through a ``BytesIO`` subclass whose
Python ``read`` refuses short reads (a body cut inside its last string must not
decode). fastavro calls ``read`` once per varint byte, so a 300 KB members chunk
costs ~15 million Python calls: ~95 ms instead of ~20 ms, and 16 such chunks were
most of the 1,000,000-member group's snapshot-to-events time (``bench/detector_stream.py``).

The fast path reads from a plain ``BytesIO`` over the body plus one sentinel byte.
Reads only move forward, so the decode ended exactly at the end of the body iff no
read was short and none reached the sentinel: then its value is the one the strict
reader would return. Anything else (an exception, stopping early or late, a wrong
record type, a validation failure) is handed to ``codec.decode`` itself, so errors
and their reasons are the codec's. Registry framing always goes to the codec.
"""

from __future__ import annotations

import io
from typing import Final

from fastavro import schemaless_reader

from services.contracts.codec import SINGLE_OBJECT_MAGIC, Codec, SingleObjectCodec
from services.contracts.models import RECORD_TYPES, Record

__all__ = ["SnapshotDecoder"]

_HEADER: Final = len(SINGLE_OBJECT_MAGIC) + 8  # magic + CRC-64-AVRO fingerprint
_SENTINEL: Final = b"\x00"


class SnapshotDecoder:
    """``codec.decode`` with a fast path for well-formed single-object records."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._schemas = codec.schemas if isinstance(codec, SingleObjectCodec) else None

    def decode(self, data: bytes | None, topic: str, expected: tuple[type, ...]) -> Record:
        """The record, or ``DecodeError`` exactly as ``codec.decode`` raises it."""
        record = self._fast(data, expected)
        return record if record is not None else self.codec.decode(data, topic, expected)

    def _fast(self, data: bytes | None, expected: tuple[type, ...]) -> Record | None:
        schemas = self._schemas
        framed = (
            schemas is not None
            and data is not None
            and len(data) >= _HEADER
            and data[: len(SINGLE_OBJECT_MAGIC)] == SINGLE_OBJECT_MAGIC
        )
        if not framed or schemas is None or data is None:
            return None
        writer = schemas.writer_for(data[len(SINGLE_OBJECT_MAGIC) : _HEADER])
        reader = schemas.current.get(writer.name) if writer is not None else None
        model = RECORD_TYPES.get(writer.name) if writer is not None else None
        if writer is None or reader is None or model is None or not issubclass(model, expected):
            return None
        buffer = io.BytesIO(data + _SENTINEL)
        buffer.seek(_HEADER)
        try:
            value = schemaless_reader(buffer, writer.parsed, reader)
            # Past the body (a short read took the sentinel) or short of it: not clean.
            return model.model_validate(value) if buffer.tell() == len(data) else None
        except Exception:  # fastavro raises many kinds on bad bytes; pydantic ValidationError
            return None

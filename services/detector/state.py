"""What the detector remembers per snapshot key, and how it is written to the changelog.

The Faust table behind the detector stores one value per chunk key (a bucket of a
group's members, or one facet of one post). A Faust changelog re-writes the whole
value on every update, so the value must be small: the ids of a bucket are stored as
byte-shuffled deltas, deflated (1.5-2.5 bytes per id instead of 8; denser groups
compress better). A 1,000,000 member group in 64 buckets is then ~30 KB per bucket,
far under Kafka's default 1 MB message limit; the same group as ONE array is ~1.5 MB
and would not fit, which is one more reason to bucket (``bench/detector.py``).

This module is pure: numpy, struct and zlib only.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

IdArray = npt.NDArray[np.int64]
TextArray = npt.NDArray[np.str_]
"""Comment ids: strings in the contract (OK comment ids are not numbers)."""


class DetectorInputError(ValueError):
    """Input the detector cannot process; the adapter dead-letters the record with str(exc)."""


class InvalidArrayError(DetectorInputError):
    """An id array that is not 1-D and strictly increasing, has the wrong dtype, or authors
    that do not align with their comment ids."""


class StateDecodeError(DetectorInputError):
    """Changelog bytes that are not a state this module wrote."""


_EMPTY: Final[IdArray] = np.empty(0, dtype=np.int64)
_EMPTY.flags.writeable = False
_EMPTY_TEXT: Final[TextArray] = np.empty(0, dtype=np.str_)
_EMPTY_TEXT.flags.writeable = False

_MAGIC: Final = b"SLDS"
_VERSION: Final = 1
_FLAG_AUTHORS: Final = 0b01
_FLAG_RETIRED: Final = 0b10
# magic, version, flags, reserved, snapshot_at, id count
_HEADER: Final = struct.Struct("<4sBBHqQ")
_ZLIB_LEVEL: Final = 1  # level 6 is 4x slower for ~4% fewer bytes


def empty_ids() -> IdArray:
    """A shared read-only empty id array (the 'before' of a new post or bucket)."""
    return _EMPTY


def empty_text() -> TextArray:
    """A shared read-only empty comment-id array."""
    return _EMPTY_TEXT


def check_ids(name: str, ids: object) -> IdArray:
    """Return a read-only view of ``ids`` after checking it is a sorted set of int64.

    Diffing by ``setdiff1d(assume_unique=True)`` is only correct on unique input, and
    a silently wrong diff means points granted or taken for nothing, so malformed
    input is refused here rather than repaired (repairing would hide a collector bug).
    """
    if not isinstance(ids, np.ndarray):
        raise InvalidArrayError(f"{name}: expected a numpy int64 array, got {type(ids).__name__}")
    if ids.dtype != np.dtype(np.int64):
        raise InvalidArrayError(f"{name}: expected dtype int64, got {ids.dtype}")
    return _increasing(name, ids)


def check_text_ids(name: str, ids: object) -> TextArray:
    """Like :func:`check_ids` for comment ids: a numpy str array, strictly increasing in
    code-point order (Python's ``sorted`` order, which the collector uses)."""
    if not isinstance(ids, np.ndarray):
        raise InvalidArrayError(f"{name}: expected a numpy str array, got {type(ids).__name__}")
    if ids.dtype.kind != "U":
        raise InvalidArrayError(f"{name}: expected a numpy str array, got dtype {ids.dtype}")
    return _increasing(name, ids)


_A = TypeVar("_A", IdArray, TextArray)


def _increasing(name: str, ids: _A) -> _A:
    if ids.ndim != 1:
        raise InvalidArrayError(f"{name}: expected a 1-D array, got shape {ids.shape}")
    if ids.size > 1:
        steps = ids[1:] > ids[:-1]
        if not steps.all():
            at = int(np.argmin(steps))
            problem = "duplicate" if ids[at] == ids[at + 1] else "unsorted"
            raise InvalidArrayError(
                f"{name}: ids must be strictly increasing; {problem} at index {at + 1} "
                f"({ids[at]!r} then {ids[at + 1]!r})"
            )
    view = ids.view()
    view.flags.writeable = False
    return view


def check_authors(name: str, authors: object, ids: TextArray) -> IdArray:
    """Return a read-only view of ``authors`` after checking it is int64 and aligned to ids."""
    if not isinstance(authors, np.ndarray):
        raise InvalidArrayError(
            f"{name}: expected a numpy int64 array, got {type(authors).__name__}"
        )
    if authors.dtype != np.dtype(np.int64) or authors.ndim != 1:
        raise InvalidArrayError(
            f"{name}: expected a 1-D int64 array, got {authors.dtype} shape {authors.shape}"
        )
    if authors.shape != ids.shape:
        raise InvalidArrayError(
            f"{name}: {authors.size} authors for {ids.size} comment ids; they must align"
        )
    view: IdArray = authors.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, slots=True, eq=False)
class FacetState:
    """The last accepted snapshot of one chunk key.

    ``snapshot_at`` orders snapshots: anything at or before it is a duplicate or a
    slow run and is ignored. For members, likes and reposts ``ids`` are int64 user
    ids and ``authors`` is None; for comments ``ids`` are the comment ids (str) and
    ``authors`` their authors, so a deletion can name whose comment vanished.
    ``retired`` marks a post that left the collection window or was deleted: its ids
    are dropped to free the table, but ``snapshot_at`` stays so a late redelivery of
    an older chunk is still recognised as stale instead of looking like a new post.

    Arrays are stored as read-only views; the state never copies or mutates them.
    """

    snapshot_at: int
    ids: IdArray | TextArray
    authors: IdArray | None = None
    retired: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.snapshot_at, bool) or not isinstance(self.snapshot_at, int):
            raise InvalidArrayError(f"snapshot_at must be an int, got {self.snapshot_at!r}")
        if self.authors is None:
            object.__setattr__(self, "ids", check_ids("state ids", self.ids))
        else:
            comment_ids = check_text_ids("state comment ids", self.ids)
            object.__setattr__(self, "ids", comment_ids)
            authors = check_authors("state authors", self.authors, comment_ids)
            object.__setattr__(self, "authors", authors)
        if self.retired and self.ids.size:
            raise InvalidArrayError("a retired state keeps no ids")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FacetState):
            return NotImplemented
        if (self.authors is None) != (other.authors is None):
            return False
        return (
            self.snapshot_at == other.snapshot_at
            and self.retired == other.retired
            and np.array_equal(self.ids, other.ids)
            and (
                self.authors is None
                or other.authors is None
                or np.array_equal(self.authors, other.authors)
            )
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: equal by value, not hashable

    def to_bytes(self) -> bytes:
        """Encode for the changelog: a 24-byte header, then one deflated body.

        User ids are delta-encoded (they are sorted, so deltas are small and their
        high bytes zero) and byte-shuffled (all first bytes, then all second bytes,
        ...) so deflate sees long runs of zeros; uint64 arithmetic lets negative ids
        wrap and round-trip exactly. Comments: shuffled authors, shuffled UTF-8
        lengths, then the UTF-8 comment ids back to back.
        """
        flags = (_FLAG_AUTHORS if self.authors is not None else 0) | (
            _FLAG_RETIRED if self.retired else 0
        )
        header = _HEADER.pack(_MAGIC, _VERSION, flags, 0, self.snapshot_at, self.ids.size)
        if self.ids.size == 0:
            return header
        if self.authors is None:
            body = _shuffle(_deltas(self.ids.view(np.uint64)))
        else:
            encoded = [text.encode() for text in self.ids.tolist()]
            lengths = np.fromiter(map(len, encoded), dtype=np.uint64, count=len(encoded))
            body = b"".join([_shuffle(self.authors.view(np.uint64)), _shuffle(lengths), *encoded])
        return header + zlib.compress(body, _ZLIB_LEVEL)

    @classmethod
    def from_bytes(cls, data: bytes) -> FacetState:
        """Decode what :meth:`to_bytes` wrote; anything else raises :class:`StateDecodeError`."""
        if len(data) < _HEADER.size:
            raise StateDecodeError(f"state too short: {len(data)} bytes")
        magic, version, flags, _reserved, snapshot_at, count = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise StateDecodeError(f"not a detector state (magic {magic!r})")
        if version != _VERSION:
            raise StateDecodeError(f"unknown detector state version {version}")
        comments = bool(flags & _FLAG_AUTHORS)
        retired = bool(flags & _FLAG_RETIRED)
        body = data[_HEADER.size :]
        try:
            if count == 0:
                if body:
                    raise StateDecodeError(f"{len(body)} trailing bytes after an empty state")
                if comments:
                    return cls(snapshot_at, _EMPTY_TEXT, _EMPTY, retired)
                return cls(snapshot_at, _EMPTY, None, retired)
            raw = _inflate(body)
            if not comments:
                if len(raw) != count * 8:
                    raise StateDecodeError(f"detector state body does not hold {count} ids")
                ids = np.cumsum(_unshuffle(raw, count), dtype=np.uint64).view(np.int64)
                return cls(snapshot_at, ids, None, retired)
            return cls(snapshot_at, *_comment_columns(raw, count), retired)
        except InvalidArrayError as exc:
            raise StateDecodeError(f"corrupt detector state: {exc}") from exc


def _inflate(body: bytes) -> bytes:
    decompressor = zlib.decompressobj()
    try:
        raw = decompressor.decompress(body)
    except zlib.error as exc:
        raise StateDecodeError(f"corrupt detector state: {exc}") from exc
    if not decompressor.eof or decompressor.unused_data:
        raise StateDecodeError("corrupt detector state: truncated or trailing bytes")
    return raw


def _comment_columns(raw: bytes, count: int) -> tuple[TextArray, IdArray]:
    if len(raw) < count * 16:
        raise StateDecodeError(f"detector state body does not hold {count} comments")
    authors = _unshuffle(raw[: count * 8], count).view(np.int64)
    ends = np.cumsum(_unshuffle(raw[count * 8 : count * 16], count)).tolist()
    blob = raw[count * 16 :]
    if ends[-1] != len(blob):
        raise StateDecodeError(f"detector state body does not hold {count} comments")
    try:
        texts = [blob[start:end].decode() for start, end in zip([0, *ends], ends, strict=False)]
    except UnicodeDecodeError as exc:
        raise StateDecodeError(f"corrupt detector state: {exc}") from exc
    return np.array(texts, dtype=np.str_), authors


def _deltas(ids: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    deltas = np.empty_like(ids)
    deltas[0] = ids[0]
    np.subtract(ids[1:], ids[:-1], out=deltas[1:])
    return deltas


def _shuffle(column: npt.NDArray[np.uint64]) -> bytes:
    return column.astype("<u8", copy=False).view(np.uint8).reshape(-1, 8).T.tobytes()


def _unshuffle(raw: bytes, count: int) -> npt.NDArray[np.uint64]:
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(8, count)
    return np.ascontiguousarray(planes.T).view("<u8").reshape(count).astype(np.uint64, copy=False)

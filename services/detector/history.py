"""What the detector's table stores per snapshot key: the last TWO snapshots, so
output can be re-derived after a crash.

Faust writes a table's changelog and the agent's output independently of the source
offset commit. If the state moved to snapshot S but S's events never reached the
broker (the worker died in between), the redelivered chunk S would be compared with
S itself and its events would be lost. Keeping the state S was diffed against
(``previous``) next to S (``current``) makes the step re-playable: a chunk whose
``snapshot_at`` equals ``current.snapshot_at`` is diffed against ``previous`` again
and yields exactly the same changes with the same event ids; downstream drops them
by ``event_id``. Only a newer chunk shifts the pair; an older one yields nothing.

Pure: numpy, struct and the diff core only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from services.detector.diff import Chunk, DiffOutcome, FacetDiff, retire, step
from services.detector.state import FacetState, StateDecodeError

__all__ = ["KeyHistory", "advance", "retire_history"]

_MAGIC: Final = b"SLDH"
_VERSION: Final = 1
# magic, version, flags (bit 0: has previous), partition, length of current
_HEADER: Final = struct.Struct("<4sBBiI")
_HAS_PREVIOUS: Final = 0b1


@dataclass(frozen=True, slots=True)
class KeyHistory:
    """The stored value of one snapshot key.

    ``current`` is the last accepted snapshot; ``previous`` is the exact state
    ``current`` was derived from by :func:`~services.detector.diff.step` (None when
    it was derived from nothing: a baseline, a new post or bucket). ``partition`` is
    the source partition the key was last written from, so a broadcast (post
    retirement, see :func:`retire_history`) touches a key only from its own
    partition, where its changelog lives.
    """

    current: FacetState
    previous: FacetState | None
    partition: int

    def to_bytes(self) -> bytes:
        """The changelog value: a 14-byte header, the current state, the previous state."""
        current = self.current.to_bytes()
        flags = _HAS_PREVIOUS if self.previous is not None else 0
        header = _HEADER.pack(_MAGIC, _VERSION, flags, self.partition, len(current))
        previous = self.previous.to_bytes() if self.previous is not None else b""
        return header + current + previous

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyHistory:
        """Decode what :meth:`to_bytes` wrote; anything else raises ``StateDecodeError``."""
        if len(data) < _HEADER.size:
            raise StateDecodeError(f"key history too short: {len(data)} bytes")
        magic, version, flags, partition, length = _HEADER.unpack_from(data)
        if magic != _MAGIC or version != _VERSION:
            raise StateDecodeError(f"not a detector key history (magic {magic!r} v{version})")
        body = data[_HEADER.size :]
        if len(body) < length:
            raise StateDecodeError("key history truncated")
        current = FacetState.from_bytes(body[:length])
        rest = body[length:]
        if flags & _HAS_PREVIOUS:
            return cls(current, FacetState.from_bytes(rest), partition)
        if rest:
            raise StateDecodeError(f"{len(rest)} trailing bytes after a key history")
        return cls(current, None, partition)


def advance(
    history: KeyHistory | None, chunk: Chunk, partition: int
) -> tuple[KeyHistory | None, FacetDiff]:
    """Apply one chunk: the history to store (None: store nothing) and what changed.

    * newer than ``current`` (or no history): :func:`step` against ``current``; the
      pair shifts to ``(current, chunk)``;
    * equal to ``current``: the same step is taken again from ``previous``, giving
      the same changes and event ids (the redelivery after a crash); nothing to store;
    * older: nothing (a slow run or an old redelivery).
    """
    if history is None:
        after, diff = step(None, chunk)
        return _stored(after, None, partition), diff
    current = history.current
    if chunk.snapshot_at == current.snapshot_at and not current.retired:
        _, diff = step(history.previous, chunk)
        return None, diff
    after, diff = step(current, chunk)
    if diff.outcome is DiffOutcome.STALE:
        return None, diff
    return _stored(after, current, partition), diff


def _stored(after: FacetState | None, before: FacetState | None, partition: int) -> KeyHistory:
    if after is None:  # step always returns a state for a non-stale chunk
        raise AssertionError("step returned no state for an accepted chunk")
    return KeyHistory(after, before, partition)


def retire_history(history: KeyHistory | None, manifest_snapshot_at: int) -> KeyHistory | None:
    """The history to store for a post the run at ``manifest_snapshot_at`` lacks (left the
    window or deleted): a tombstone without ids, no previous; None when nothing changes.

    Nothing is emitted for it (absence takes nothing from members). A redelivered
    chunk of an older run stays stale; the post coming back is re-baselined silently.
    """
    if history is None:
        return None
    tomb = retire(history.current, manifest_snapshot_at)
    if tomb is None or tomb is history.current:
        return None
    return KeyHistory(tomb, None, history.partition)

"""Detector benchmark: how long the numpy diff, the Change records and the state codec take.

DESIGN.md promises that a 1,000,000-member group diffs "well under a second"; this
prints the figures behind that claim for the two layouts (64 hash buckets, one
array), for materialising Change records (the per-event Python cost), and for the
changelog encoding of the state. Run: ``.venv/bin/python -m bench.detector``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import numpy as np

from services.detector.diff import Chunk, Facet, changes, step
from services.detector.state import FacetState, IdArray

T = TypeVar("T")

MEMBERS = 1_000_000
BUCKETS = 64
CHURN = 0.01  # half leave, half join
BASE = 1_700_000_000_000
LATER = BASE + 3_600_000


def best(fn: Callable[[], T], repeat: int = 5) -> tuple[float, T]:
    """Best wall time of ``repeat`` calls, in seconds, and the last result."""
    fastest = float("inf")
    result: T
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        fastest = min(fastest, time.perf_counter() - started)
    return fastest, result


def bucket_of(ids: IdArray) -> IdArray:
    """The contract's bucketing (MembersChunk.bucket): member id mod bucket count."""
    return ids % BUCKETS


def group(rng: np.random.Generator) -> tuple[IdArray, IdArray]:
    """A 1M-member group before and after a run with CHURN of its members changing."""
    before = np.unique(rng.integers(1, 900_000_000, int(MEMBERS * 1.02), dtype=np.int64))
    before = rng.permutation(before)[:MEMBERS]
    before.sort()
    changed = int(MEMBERS * CHURN / 2)
    stay = np.sort(rng.permutation(before)[changed:])
    joiners = rng.integers(900_000_000, 990_000_000, changed, dtype=np.int64)
    return before, np.union1d(stay, joiners)


def members(ids: IdArray, at: int, bucket: int | None = None) -> Chunk:
    return Chunk(Facet.MEMBERS, "vk", 1, at, BASE, ids, bucket=bucket)


def main() -> None:
    rng = np.random.default_rng(2026)
    before, after = group(rng)
    rows: list[tuple[str, str, str]] = []

    # One array.
    previous = FacetState(BASE, before)
    seconds, chunk = best(lambda: members(after, LATER))
    rows.append(("validate 1M ids (Chunk)", f"{seconds * 1e3:.1f} ms", ""))
    seconds, (_, diff) = best(lambda: step(previous, chunk))
    rows.append(
        ("diff 1M, one array", f"{seconds * 1e3:.1f} ms", f"{len(diff):,} changes (1% churn)")
    )

    # 64 buckets.
    b_before, b_after = bucket_of(before), bucket_of(after)
    states = [FacetState(BASE, before[b_before == b]) for b in range(BUCKETS)]
    chunks = [members(after[b_after == b], LATER, b) for b in range(BUCKETS)]

    def diff_buckets() -> int:
        return sum(len(step(states[b], chunks[b])[1]) for b in range(BUCKETS))

    seconds, total = best(diff_buckets)
    rows.append(
        (
            f"diff 1M, {BUCKETS} buckets",
            f"{seconds * 1e3:.1f} ms",
            f"{total:,} changes, all buckets",
        )
    )
    parts = [after[b_after == b] for b in range(BUCKETS)]
    seconds, _ = best(lambda: [members(parts[b], LATER, b) for b in range(BUCKETS)])
    rows.append((f"validate {BUCKETS} chunks", f"{seconds * 1e3:.1f} ms", "all buckets"))

    # Change records: the Python part (object + SHA-256 per event).
    seconds, records = best(lambda: list(changes(diff)), repeat=3)
    rows.append(
        ("materialise Change", f"{len(records) / seconds:,.0f} /s", f"{len(records):,} records")
    )
    # A post published after the baseline: every one of its 100,000 likers is an event.
    likers = np.sort(rng.choice(after, 100_000, replace=False))
    new_post = Chunk(Facet.LIKES, "vk", 1, LATER, BASE, likers, post_id=7, posted_at=LATER)
    seconds, (_, big) = best(lambda: step(None, new_post), repeat=3)
    rows.append(("diff a new post's 100k likes", f"{seconds * 1e3:.1f} ms", "numpy only"))
    seconds, records = best(lambda: list(changes(big)), repeat=1)
    rows.append(
        ("materialise 100k likes", f"{seconds * 1e3:.0f} ms", f"{len(records) / seconds:,.0f} /s")
    )

    # Comments: string ids (OK's are not numbers), so numpy str arrays and a JSON event id.
    comment_ids = np.array(sorted(f"MTU0NTc4{n:08d}" for n in range(5_000)), dtype=np.str_)
    authors = rng.integers(1, 900_000_000, comment_ids.size, dtype=np.int64)
    kept = rng.random(comment_ids.size) > 0.05
    old = FacetState(BASE, comment_ids, authors)
    fresh = np.array([f"MTU0NTc5{n:08d}" for n in range(250)], dtype=np.str_)
    now = Chunk(
        Facet.COMMENTS,
        "ok",
        1,
        LATER,
        BASE,
        np.concatenate([comment_ids[kept], fresh]),
        np.concatenate([authors[kept], authors[:250]]),
        post_id=1,
    )
    seconds, (_, comment_diff) = best(lambda: step(old, now))
    rows.append(
        ("diff a 5,000-comment post", f"{seconds * 1e3:.2f} ms", f"{len(comment_diff):,} changes")
    )
    seconds, records = best(lambda: list(changes(comment_diff)), repeat=3)
    rows.append(("materialise comment Change", f"{len(records) / seconds:,.0f} /s", ""))
    seconds, data = best(old.to_bytes)
    rows.append(
        (
            "state encode, 5,000 comments",
            f"{seconds * 1e3:.2f} ms",
            f"{len(data):,} B ({len(data) / comment_ids.size:.2f} B/comment)",
        )
    )

    # State codec (what the Faust changelog stores per key).
    bucket_state = states[0]
    for label, state in (
        (f"bucket of {bucket_state.ids.size:,}", bucket_state),
        ("one array of 1M", previous),
    ):
        seconds, data = best(state.to_bytes)
        rows.append(
            (
                f"state encode, {label}",
                f"{seconds * 1e3:.2f} ms",
                f"{len(data):,} B ({len(data) / state.ids.size:.2f} B/id)",
            )
        )
        seconds, _ = best(partial(FacetState.from_bytes, data))
        rows.append((f"state decode, {label}", f"{seconds * 1e3:.2f} ms", ""))

    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"detector: {MEMBERS:,} members, {CHURN:.0%} churn, numpy {np.__version__}")
    print(f"{'measure':<{width}}  {'figure':>{value_width}}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {note}")


if __name__ == "__main__":
    main()

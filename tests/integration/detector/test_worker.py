"""The detector worker against a real broker: runs in, exactly the expected events out."""

from __future__ import annotations

from collections import Counter

from services.contracts import DomainEvent, GroupJoined, PostLiked
from tests.integration.detector.conftest import Post, Stack, Worker, at, run_chunks


def _what(event: DomainEvent) -> tuple[str, str, int | None, str | None]:
    return (
        type(event).__name__,
        event.social_user_id,
        getattr(event, "post_id", None),
        getattr(event, "comment_id", None),
    )


def test_runs_give_exactly_the_expected_events_once_each(stack: Stack, worker: Worker) -> None:
    group = 101
    old = Post(1, at(-60), likes={1, 2}, reposts={3}, comments={"c1": 1})
    stack.publish(run_chunks(group, at(0), at(0), {1, 2, 3, 4}, [old]))
    # Run 2: 5 joins, 4 leaves; 3 likes post 1, 2 unlikes; c1 deleted, c2 posted by 2;
    # post 2 is new after the baseline: its activity counts.
    old2 = Post(1, at(-60), likes={1, 3}, reposts={3}, comments={"c2": 2})
    new = Post(2, at(5), likes={5}, reposts={1}, comments={"x": 5})
    stack.publish(run_chunks(group, at(10), at(0), {1, 2, 3, 5}, [old2, new]))
    # Run 3: post 1 leaves the window (nothing taken from its likers); 5 unlikes post 2.
    new3 = Post(2, at(5), likes=set(), reposts={1}, comments={"x": 5})
    stack.publish(run_chunks(group, at(20), at(0), {1, 2, 3, 5}, [new3]))
    # Run 4 redelivers run 2 (older for most keys; for post 1's, not yet retired
    # perhaps, the current one): no new event id.
    stack.publish(run_chunks(group, at(10), at(0), {1, 2, 3, 5}, [old2, new]))
    # Run 5: 6 joins. (A post coming back is re-baselined: tests/unit/detector.)
    stack.publish(run_chunks(group, at(30), at(0), {1, 2, 3, 5, 6}, [new3]))

    expected = Counter(
        [
            ("GroupLeft", "4", None, None),
            ("GroupJoined", "5", None, None),
            ("PostUnliked", "2", 1, None),
            ("PostLiked", "3", 1, None),
            ("CommentDeleted", "1", 1, "c1"),
            ("CommentPosted", "2", 1, "c2"),
            ("PostLiked", "5", 2, None),
            ("PostReposted", "1", 2, None),
            ("CommentPosted", "5", 2, "x"),
            ("PostUnliked", "5", 2, None),
            ("GroupJoined", "6", None, None),
        ]
    )
    stack.poll_events(
        lambda _: Counter(map(_what, stack.events_of(group))) >= expected, "the expected events"
    )
    # Anything extra would come from the same runs, before or with the last expected
    # one; a marker run on another group, published last, bounds the wait.
    marker = 102
    stack.publish(run_chunks(marker, at(0), at(0), {1}, []))
    stack.publish(run_chunks(marker, at(10), at(0), {1, 2, 3, 4, 5, 6}, [], buckets=1))
    stack.poll_events(lambda _: len(stack.events_of(marker)) == 5, "the marker group's joins")
    delivered = stack.events_of(group)
    got = list({e.event_id: e for e in delivered}.values())
    # Once each by event id. A redelivered snapshot equal to a key's current one is
    # re-derived with the same ids (docs/detector.md); it can never add a new id.
    assert Counter(map(_what, got)) == expected
    for event in delivered:
        first = next(e for e in got if e.event_id == event.event_id)
        assert event.model_copy(update={"observed_at": first.observed_at}) == first
    for key, event in stack.seen:
        assert key == event.key().to_bytes()
    joined = next(e for e in got if isinstance(e, GroupJoined) and e.social_user_id == "5")
    assert joined.previous_snapshot_at == at(0)
    assert joined.snapshot_at == at(10)
    liked = next(e for e in got if isinstance(e, PostLiked) and e.post_id == 2)
    assert liked.event_id == PostLiked.build(**liked.model_dump(exclude={"event_id"})).event_id

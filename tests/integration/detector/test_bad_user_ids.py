"""Snapshot user ids below 1, through the real detector worker: a dead letter with the
reason, no event for user "-1" or "0" on the log, and the stream goes on."""

from __future__ import annotations

from services.contracts import MembersChunk, PostLikesChunk, SnapshotChunk
from services.contracts.topics import SNAPSHOTS
from tests.integration.detector.conftest import Post, Stack, Worker, at, run_chunks


def _forged(chunks: list[SnapshotChunk]) -> list[SnapshotChunk]:
    """The run with ids no collector publishes (the models refuse them, so the chunks
    are changed without validation): members -1 and 0, likers -42 and 0."""
    forged: list[SnapshotChunk] = []
    for chunk in chunks:
        if isinstance(chunk, MembersChunk):
            forged.append(chunk.model_copy(update={"member_ids": (-1, 0, *chunk.member_ids)}))
        elif isinstance(chunk, PostLikesChunk):
            forged.append(chunk.model_copy(update={"user_ids": (-42, 0, *chunk.user_ids)}))
        else:
            forged.append(chunk)
    return forged


def test_chunks_with_user_ids_below_one_are_dead_letters_and_yield_no_event(
    stack: Stack, worker: Worker
) -> None:
    group, marker = 151, 152
    stack.publish(run_chunks(group, at(0), at(0), {1, 2}, [], buckets=1))
    # A post new after the baseline: each of its likers would be a PostLiked.
    new_post = Post(9, at(5), likes={5})
    stack.publish(_forged(run_chunks(group, at(10), at(0), {1, 2}, [new_post], buckets=1)))
    # The next run is diffed against the baseline: the forged chunks changed nothing.
    stack.publish(run_chunks(group, at(20), at(0), {1, 2, 3}, [new_post], buckets=1))
    stack.publish(run_chunks(marker, at(0), at(0), set(), [], buckets=1))
    stack.publish(run_chunks(marker, at(10), at(0), {7}, [], buckets=1))
    stack.poll_events(lambda _: len(stack.events_of(marker)) == 1, "the marker's join")
    stack.poll_commits_caught_up()

    got = sorted((type(e).__name__, e.social_user_id) for e in stack.events_of(group))
    assert got == [("GroupJoined", "3"), ("PostLiked", "5")]
    letters = stack.dead_letters(2, original_topic=stack.topics.name(SNAPSHOTS))
    by_key = {letter.key: letter for letter in letters}
    assert set(by_key) == {b"vk:151:members:0", b"vk:151:likes:9"}, letters
    members, likes = by_key[b"vk:151:members:0"], by_key[b"vk:151:likes:9"]
    assert members.error_class == "services.contracts.codec.DecodeError"
    assert "member_ids.0" in members.reason and "greater than or equal to 1" in members.reason
    assert "user_ids.0" in likes.reason, likes.reason
    assert members.consumer_group == stack.app_id
    assert worker.alive()

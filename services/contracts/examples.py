"""One valid example of every contract record.

Shared by the contract tests, the codec benchmark and other services' tests, so a
new field is filled in once, here, instead of in every test that needs a record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.contracts.ids import command_id
from services.contracts.models import (
    BonusAccrue,
    BonusDeduct,
    Channel,
    Comment,
    CommentDeleted,
    CommentPosted,
    CounterChanged,
    CounterIncrement,
    DeadLetter,
    DomainEvent,
    EventKey,
    GroupJoined,
    GroupLeft,
    MailingSet,
    MemberKey,
    MembersChunk,
    MessageFailed,
    MessageSent,
    Network,
    PointsCredited,
    PointsDeducted,
    PostCommentsChunk,
    PostLiked,
    PostLikesChunk,
    PostReposted,
    PostRepostsChunk,
    PostUnliked,
    ProfileLinked,
    ProfileUnlinked,
    Record,
    RepostDeleted,
    RunManifest,
    SendMessage,
    SkippedObject,
    SnapshotKey,
    SubscriptionChanged,
)

T0 = datetime(2025, 3, 1, 9, 30, 15, 250_000, tzinfo=UTC)
T1 = T0 + timedelta(minutes=15)


def domain_events(network: Network = Network.VK, group_id: int = 4242) -> list[DomainEvent]:
    """One of each of the ten domain events, with deterministic ids."""
    user = "100500"
    window = {"group_id": group_id, "previous_snapshot_at": T0, "snapshot_at": T1}
    common = {"network": network, "social_user_id": user, "observed_at": T1}
    link = {**common, "member_id": "m-1", "snapshot_at": T0}
    return [
        ProfileLinked.build(**link, registration=True),
        ProfileUnlinked.build(**link, registration=False),
        GroupJoined.build(**common, **window),
        GroupLeft.build(**common, **window),
        PostLiked.build(**common, **window, post_id=7),
        PostUnliked.build(**common, **window, post_id=7),
        CommentPosted.build(**common, **window, post_id=7, comment_id="c-1"),
        CommentDeleted.build(**common, **window, post_id=7, comment_id="c-1"),
        PostReposted.build(**common, **window, post_id=8),
        RepostDeleted.build(**common, **window, post_id=8),
    ]


def all_records() -> list[Record]:
    """One example of every top-level record in ``schemas/``."""
    chunk = {
        "network": Network.VK,
        "group_id": 4242,
        "run_id": "run-1",
        "snapshot_at": T1,
        "baseline_at": T0,
    }
    post = {**chunk, "post_id": 7, "posted_at": T0}
    event = domain_events()[4]
    cmd = {
        "member_id": "m-1",
        "offer_id": "likes",
        "source_event_id": event.event_id,
        "issued_at": T1,
    }
    out = {
        "command_id": command_id("likes", event.event_id, 0),
        "member_id": "m-1",
        "occurred_at": T1,
    }
    records: list[Record] = [
        MembersChunk(**chunk, bucket=3, bucket_count=16, member_ids=(3, 19, 35)),
        PostLikesChunk(**post, user_ids=(1, 2, 100500)),
        PostRepostsChunk(**post, user_ids=(2,)),
        PostCommentsChunk(**post, comments=(Comment(comment_id="c-1", author_id=100500),)),
        RunManifest(
            **chunk,
            bucket_count=16,
            post_ids=(7, 8),
            chunk_count=21,
            skipped=(SkippedObject(facet="reposts", post_id=8, reason="vk error 15"),),
        ),
        *domain_events(),
        BonusAccrue(
            **cmd, command_id=command_id("likes", event.event_id, 0), points=5, reason="first like"
        ),
        BonusDeduct(
            **cmd,
            command_id=command_id("likes", event.event_id, 1),
            points=5,
            reason="unliked",
            reverses=command_id("likes", event.event_id, 0),
            replay=True,
        ),
        SendMessage(
            **cmd,
            command_id=command_id("likes", event.event_id, 2),
            channel=Channel.EMAIL,
            template_id="thanks",
            params={"points": "5"},
            marketing=False,
        ),
        CounterIncrement(
            **cmd, command_id=command_id("likes", event.event_id, 3), name="likes_this_month", by=1
        ),
        MailingSet(
            **cmd,
            command_id=command_id("likes", event.event_id, 4),
            channel=Channel.SMS,
            enabled=False,
        ),
        PointsCredited(**out, points=5, balance=105),
        PointsDeducted(**out, points=5, balance=100),
        MessageSent(**out, channel=Channel.PUSH, template_id="thanks", provider_message_id="p-9"),
        MessageFailed(
            **out, channel=Channel.VIBER, template_id="thanks", reason="timeout", attempts=5
        ),
        SubscriptionChanged(**out, channel=Channel.SMS, enabled=False),
        CounterChanged(**out, name="likes_this_month", by=1, value=3),
        DeadLetter(
            original_topic="social.events",
            original_partition=2,
            original_offset=12345,
            key=b"vk:100500",
            value=b"\xc3\x01garbage",
            error_class="services.contracts.codec.DecodeError",
            reason="unknown schema fingerprint",
            failed_at=T1,
        ),
        SnapshotKey(network=Network.OK, group_id=4242, facet="likes", bucket=7),
        EventKey(network=Network.VK, social_user_id="100500"),
        MemberKey(member_id="m-1"),
    ]
    return records

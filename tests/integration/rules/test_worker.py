"""The rules worker against a real broker and PostgreSQL, run as its own process."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from services.contracts import models as m
from services.contracts.ids import command_id
from services.contracts.topics import COMMANDS_BONUS, COMMANDS_NOTIFY
from services.rules.offer_store import EXAMPLES_DIR
from services.rules.offers import load_offer
from services.runtime import kafka
from tests.integration.outage import TcpSwitch
from tests.integration.rules.harness import (
    CommandReader,
    Env,
    Received,
    Worker,
    activate_examples,
    dead_letters,
    group_event,
    liked,
    linked,
    produce,
    produce_aborted,
    produce_raw,
    unlinked,
    worker,
    worker_ready,
)

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


def _accrues(received: list[Received]) -> list[m.BonusAccrue]:
    return [r.command for r in received if isinstance(r.command, m.BonusAccrue)]


def test_linked_events_become_commands_and_offer_changes_apply_without_restart(
    rules_env: Callable[[str], Env], tmp_path: Path
) -> None:
    env = rules_env("rules-worker")
    activate_examples(env, "link-profile", "likes-5-then-1")
    reader = CommandReader(env)
    link = linked("42", "M1", T0)
    likes = [liked("42", post, T0 + timedelta(hours=post)) for post in (1, 2)]
    stranger = liked("99", 1, T0 + timedelta(hours=1))  # never linked: earns nothing
    try:
        with worker(env, tmp_path / "worker.log") as w:
            w.wait_offers({"link-profile", "likes-5-then-1"})
            aborted = liked("42", 9, T0 + timedelta(minutes=30))  # rolled back: never happened
            produce_raw(env, b"vk:42", b"not avro")  # dead-lettered; the stream goes on
            produce(env, [link])
            produce_aborted(env, [aborted])  # after the link: it would earn if it were read
            produce(env, [*likes, stranger])
            got = reader.until(lambda r: len(_accrues(r)) >= 3, "link and like credits")
            bonus = [r for r in got if r.topic == COMMANDS_BONUS]
            assert {r.key for r in got} == {b"M1"}
            assert {(r.command.command_id, r.command.points) for r in bonus} == {  # type: ignore[union-attr]
                (command_id("link-profile", link.event_id, 0), 50),
                (command_id("likes-5-then-1", likes[0].event_id, 0), 5),
                (command_id("likes-5-then-1", likes[1].event_id, 0), 1),
            }
            notify = [r for r in got if r.topic == COMMANDS_NOTIFY]
            assert [r.command.command_id for r in notify] == [
                command_id("link-profile", link.event_id, 1)
            ]
            assert all(r.command.source_event_id != stranger.event_id for r in got)
            assert all(r.command.source_event_id != aborted.event_id for r in got)

            # A new offer goes live and an old one stops, without a restart.
            store = env.store()
            join = load_offer(EXAMPLES_DIR / "join-group.yaml")
            store.create(join.model_dump(mode="json"))
            store.set_active(join.id, True)
            store.set_active("likes-5-then-1", False)
            w.wait_offers({"link-profile", "join-group"})
            joined = group_event(m.GroupJoined, "42", T0 + timedelta(days=1))
            late_like = liked("42", 3, T0 + timedelta(days=1, hours=1))
            unlink = unlinked("42", "M1", T0 + timedelta(days=1, hours=2))
            left = group_event(m.GroupLeft, "42", T0 + timedelta(days=2))  # after the unlink
            produce(env, [joined, late_like, unlink, left])
            got = reader.until(
                lambda r: any(x.command.source_event_id == left.event_id for x in r),
                "leave deduction after the unlink",
            )
            by_source = {r.command.source_event_id: r.command for r in got}
            assert isinstance(by_source[joined.event_id], m.BonusAccrue)
            assert by_source[joined.event_id].points == 20  # type: ignore[union-attr]
            deduct = by_source[left.event_id]  # the tombstone resolves it to the former member
            assert isinstance(deduct, m.BonusDeduct)
            assert (deduct.member_id, deduct.points) == ("M1", 20)
            assert deduct.reverses == command_id("join-group", joined.event_id, 0)
            assert late_like.event_id not in by_source  # its offer was deactivated
            assert aborted.event_id not in by_source  # read_committed
            (letter,) = dead_letters(env, 1)
            assert (letter.key, letter.value, letter.consumer_group) == (
                b"vk:42",
                b"not avro",
                env.app_id,
            )
            assert "magic" in letter.reason
    finally:
        reader.close()


def test_an_event_outside_the_contract_is_a_dead_letter_and_the_next_like_earns(
    rules_env: Callable[[str], Env], tmp_path: Path
) -> None:
    """A ``PostLiked`` dated 9999-12-31 overflowed the engine's date arithmetic in a
    loop; the contract's bounds now refuse it when it is decoded, so it is a dead
    letter and the member's next like (same key, same partition) earns."""
    env = rules_env("rules-bounds")
    activate_examples(env, "likes-5-then-1")
    reader = CommandReader(env)
    far = liked("51", 1, T0 + timedelta(hours=1))
    forged = m.PostLiked.model_construct(
        **{**far.model_dump(), "observed_at": datetime(9999, 12, 31, tzinfo=UTC),
           "snapshot_at": datetime(9999, 12, 31, tzinfo=UTC)}
    )  # fmt: skip
    good = liked("51", 2, T0 + timedelta(hours=2))
    try:
        with worker(env, tmp_path / "worker.log") as w:
            w.wait_offers({"likes-5-then-1"})
            produce(env, [linked("51", "M51", T0), forged, good])
            got = reader.until(
                lambda r: any(x.command.source_event_id == good.event_id for x in r),
                "the credit of the like after the bad one",
            )
            assert all(x.command.source_event_id != far.event_id for x in got)
            (letter,) = dead_letters(env, 1)
            assert letter.key == b"vk:51" and letter.consumer_group == env.app_id
            assert letter.error_class == "services.contracts.codec.DecodeError"
            assert "outside" in letter.reason, letter.reason
            assert worker_ready(w)
    finally:
        reader.close()


def test_a_killed_worker_resumes_with_its_state_and_never_credits_twice(
    rules_env: Callable[[str], Env], tmp_path: Path
) -> None:
    env = rules_env("rules-crash")
    activate_examples(env, "likes-5-then-1")
    reader = CommandReader(env)
    first: list[m.DomainEvent] = [linked("7", "M7", T0), liked("7", 1, T0 + timedelta(hours=1))]
    try:
        with worker(env, tmp_path / "worker-1.log") as w:
            w.wait_offers({"likes-5-then-1"})
            produce(env, first)
            reader.until(lambda r: len(_accrues(r)) >= 1, "first like credit")
            w.process.send_signal(signal.SIGKILL)  # no flush, no commit, no goodbye
            w.process.wait(30)

        # The same like seen again by the detector (a new snapshot) and a new like.
        again = liked("7", 1, T0 + timedelta(hours=2))
        new = liked("7", 2, T0 + timedelta(hours=3))
        with worker(env, tmp_path / "worker-2.log") as w:
            w.wait_offers({"likes-5-then-1"})
            produce(env, [again, new])
            reader.until(
                lambda r: any(a.source_event_id == new.event_id for a in _accrues(r)),
                "the new like's credit",
            )
        credits = {a.command_id: a.points for a in _accrues(reader.received)}
        assert credits == {
            command_id("likes-5-then-1", first[1].event_id, 0): 5,
            command_id("likes-5-then-1", new.event_id, 0): 1,  # the state survived: 2nd like
        }
    finally:
        reader.close()


def test_sigterm_stops_the_worker_cleanly(rules_env: Callable[[str], Env], tmp_path: Path) -> None:
    env = rules_env("rules-term")
    with worker(env, tmp_path / "worker.log") as w:
        w.wait_offers(set())
        w.process.send_signal(signal.SIGTERM)
        try:
            code = w.process.wait(45)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError("worker ignored SIGTERM") from exc
    assert code == 0, (tmp_path / "worker.log").read_text()[-2000:]


def test_a_changelog_with_the_wrong_partition_count_is_refused_at_start(
    rules_env: Callable[[str], Env], tmp_path: Path
) -> None:
    """A changelog whose partition n does not match the input's partition n would mix
    state: the worker says which topic and what to do, and exits non-zero."""
    env = rules_env("rules-layout")
    admin = kafka.admin(env.kafka)
    changelog = env.topics.name(f"{env.app_id}.links-changelog")
    for future in admin.delete_topics([changelog]).values():
        future.result(30)
    deadline = time.monotonic() + 30
    while True:  # deletion is asynchronous
        try:
            admin.create_topics([NewTopic(changelog, env.topics.partitions + 1, 1)])[
                changelog
            ].result(30)
            break
        except KafkaException:
            assert time.monotonic() < deadline, "changelog not re-created"
            time.sleep(0.5)
    log = tmp_path / "worker.log"
    with worker(env, log) as w:
        code = w.process.wait(60)
    assert code != 0
    text = log.read_text()
    assert changelog in text
    assert f"has {env.topics.partitions + 1} partitions" in text
    assert "Delete the changelog" in text


def test_a_profile_linked_to_another_member_earns_no_second_link_bonus(
    rules_env: Callable[[str], Env], tmp_path: Path
) -> None:
    """Link-bonus farming through the worker: vk:42 links to M1 (50), is unlinked, the
    worker restarts (the links state comes back from its changelog), vk:42 links to M2:
    no welcome bonus for M2, though M2 earns for the profile's later like."""
    env = rules_env("rules-relink")
    activate_examples(env, "link-profile", "likes-5-then-1")
    reader = CommandReader(env)
    first = linked("42", "M1", T0)
    with worker(env, tmp_path / "first.log") as w:
        w.wait_offers({"link-profile", "likes-5-then-1"})
        produce(env, [first, unlinked("42", "M1", T0 + timedelta(hours=1))])
        reader.until(lambda r: len(_accrues(r)) >= 1, "M1's welcome bonus")
    second = linked("42", "M2", T0 + timedelta(hours=2))
    like = liked("42", 7, T0 + timedelta(hours=3))
    with worker(env, tmp_path / "second.log") as w:
        w.wait_offers({"link-profile", "likes-5-then-1"})
        produce(env, [second, like])
        # The like is after the link on the same partition: once its credit is here, a
        # link bonus for M2 would have been too.
        got = reader.until(
            lambda r: any(a.source_event_id == like.event_id for a in _accrues(r)), "M2's like"
        )
    assert [(a.member_id, a.offer_id, a.points) for a in _accrues(got)] == [
        ("M1", "link-profile", 50),
        ("M2", "likes-5-then-1", 5),
    ]


def _not_ready_reason(w: Worker) -> str | None:
    try:
        body = httpx.get(f"http://127.0.0.1:{w.port}/readyz", timeout=2).json()
    except httpx.HTTPError:
        return None
    return None if body.get("ready") else str(body.get("reason"))


def test_a_worker_started_while_postgres_is_away_waits_for_it_and_starts_when_it_returns(
    rules_env: Callable[[str], Env], tmp_path: Path
) -> None:
    """Restarted during an outage (exit 75 after a broker hang), the worker used to exit
    1 from its first check and be started again and again; now it waits, says why on
    ``/readyz``, and is ready within seconds once PostgreSQL answers."""
    env = rules_env("rules-wait")
    url = env.database.database_url.get_secret_value()
    switch = TcpSwitch.before(url)
    switch.off()
    log = tmp_path / "worker.log"
    try:
        with worker(env, log, DATABASE_URL=switch.url(url)) as w:
            deadline = time.monotonic() + 30
            reason = _not_ready_reason(w)
            while reason is None or "waiting for its dependencies" not in reason:
                assert w.process.poll() is None, f"worker exited: {log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"readyz said {reason!r}"
                time.sleep(0.2)
                reason = _not_ready_reason(w)
            assert "PostgreSQL" in reason, reason
            time.sleep(3)
            assert w.process.poll() is None, f"worker exited: {log.read_text()[-3000:]}"
            switch.on()
            back = time.monotonic()
            while not worker_ready(w):
                assert w.process.poll() is None, f"worker exited: {log.read_text()[-3000:]}"
                assert time.monotonic() - back < 30, f"not ready: {_not_ready_reason(w)}"
                time.sleep(0.2)
    finally:
        switch.close()

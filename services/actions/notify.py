"""The notification consumer: at most one delivery per command id.

Per batch: (1) decide each message (render, suppressed, delayed by quiet hours, or
send) and commit a ``deliveries`` row for it *before* anything leaves the building
(``INSERT ... ON CONFLICT DO NOTHING``: a row already there means the message was
handled, so it is never sent again); (2) send, with retries and exponential backoff,
on a small thread pool; (3) in the batch's transaction with the offsets, mark rows
``sent`` / ``failed`` and queue MessageSent / MessageFailed (+ dead letter).

A crash between (1) and (3) leaves a row in ``sending``: that message may or may not
have gone out, and it is never retried. That is the price of "at most once"; the
rows are easy to find (``status = 'sending'`` and old) for a person to check.
A ``failed`` row can be claimed again by a redriven command: every attempt got an
error, and the idempotency key lets the provider drop a request it did receive.

Messages held for quiet hours are decided again when they fall due: the member may
have opted out meanwhile (-> ``suppressed``) and the template may no longer render
(-> ``failed`` with its outcome and dead letter, in the transaction that claims the
rows, so nothing is left in ``sending`` by a render error).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg

from services.actions.channels import Outgoing, Sender, SendError
from services.actions.consumers import CommandHandler, CommandItem, emit_outcome
from services.actions.decisions import MessagePolicy, decide_message
from services.actions.settings import ActionsSettings
from services.actions.templates import Rendered, TemplateProblemError, TemplateStore
from services.contracts.models import Channel, DeadLetter, MessageFailed, MessageSent, SendMessage
from services.contracts.topics import COMMANDS_NOTIFY
from services.runtime.pgsink import Emit
from services.runtime.retry import Backoff, RetryCallState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    item: CommandItem
    status: str  # sending | suppressed | scheduled | failed
    outgoing: Outgoing | None = None
    reason: str | None = None
    send_after: datetime | None = None


@dataclass(frozen=True)
class Result:
    decision: Decision
    status: str  # sent | failed | suppressed | scheduled
    attempts: int = 0
    reason: str | None = None
    provider_message_id: str | None = None


def _attempts(retrying: Any) -> int:
    """How many tries the retry loop made (tenacity's statistics of its last run)."""
    return int(retrying.statistics.get("attempt_number", 1))


class NotifyHandler(CommandHandler):
    name: ClassVar[str] = "notify"
    topic: ClassVar[str] = COMMANDS_NOTIFY
    expected: ClassVar[tuple[type, ...]] = (SendMessage,)

    def __init__(
        self, settings: ActionsSettings, templates: TemplateStore, senders: dict[str, Sender]
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.senders = senders
        self.backoff = Backoff(
            settings.send_attempts, settings.backoff_base_s, settings.backoff_max_s, jitter=False
        )
        self.pool = ThreadPoolExecutor(settings.send_concurrency, thread_name_prefix="send")
        self.policy = MessagePolicy(
            settings.mailing_default_enabled,
            settings.quiet_start,
            settings.quiet_end,
            settings.zone,
        )

    # ------------------------------------------------------------------ decide

    def _render(self, command: SendMessage) -> Rendered | str:
        """The rendered message, or why it cannot be: any render error fails this one
        message (dead letter), never the batch."""
        try:
            return self.templates.render(command.template_id, command.params)
        except TemplateProblemError as exc:
            return str(exc)
        except Exception as exc:  # one bad template must not stop the stream
            return f"template {command.template_id!r}: {type(exc).__name__}: {exc}"

    def _decide(
        self,
        item: CommandItem,
        subscribed: dict[tuple[str, str], bool],
        now: datetime,
        *,
        due: bool = False,
    ) -> Decision:
        """``due``: a message held for quiet hours whose time has come; it is checked
        again (template, subscription) but never held a second time."""
        command = item.record
        assert isinstance(command, SendMessage)
        decided = decide_message(
            command, self._render(command), subscribed, self.policy, now, due=due
        )
        return Decision(item, decided.status, decided.outgoing, decided.reason, decided.send_after)

    @staticmethod
    def _subscriptions(conn: psycopg.Connection, members: list[str]) -> dict[tuple[str, str], bool]:
        return {
            (str(m), str(c)): bool(e)
            for m, c, e in conn.execute(
                "SELECT member_id, channel, enabled FROM subscriptions WHERE member_id = ANY(%s)",
                (members,),
            )
        }

    def prepare(self, conn: psycopg.Connection, items: list[CommandItem]) -> list[Decision]:
        unique: dict[str, CommandItem] = {}
        for item in items:
            unique.setdefault(item.record.command_id, item)
        members = sorted({item.record.member_id for item in unique.values()})
        subscribed = self._subscriptions(conn, members)
        now = datetime.now(UTC)
        if len(unique) < len(items):
            self.metrics.duplicates.labels(self.name).inc(len(items) - len(unique))
        return [self._decide(item, subscribed, now) for item in unique.values()]

    def _claim(self, conn: psycopg.Connection, decisions: list[Decision]) -> set[str]:
        """Write the rows; the ids returned are ours to act on."""
        if not decisions:
            return set()
        commands: list[SendMessage] = [d.item.record for d in decisions]  # type: ignore[misc]
        later = [d.status == "scheduled" for d in decisions]
        columns = (
            [c.command_id for c in commands],
            [c.member_id for c in commands],
            [c.channel.value for c in commands],
            [c.template_id for c in commands],
            [json.dumps(c.params) for c in commands],
            [c.marketing for c in commands],
            [d.status for d in decisions],
            [d.send_after for d in decisions],
            [d.reason for d in decisions],
            [d.item.topic if keep else None for d, keep in zip(decisions, later, strict=True)],
            [d.item.partition if keep else None for d, keep in zip(decisions, later, strict=True)],
            [d.item.offset if keep else None for d, keep in zip(decisions, later, strict=True)],
            [d.item.key if keep else None for d, keep in zip(decisions, later, strict=True)],
            [d.item.value if keep else None for d, keep in zip(decisions, later, strict=True)],
        )
        unnest = (
            "unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::jsonb[], %s::boolean[], "
            "%s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::int[], %s::bigint[], "
            "%s::bytea[], %s::bytea[]) AS u(id, m, ch, tpl, prm, mk, st, sa, why, stp, spa, "
            "sof, rk, rv)"
        )
        fresh = {
            row[0]
            for row in conn.execute(
                "INSERT INTO deliveries (command_id, member_id, channel, template_id, params, "
                "marketing, status, send_after, reason, source_topic, source_partition, "
                f"source_offset, raw_key, raw_value) SELECT * FROM {unnest} "
                "ON CONFLICT (command_id) DO NOTHING RETURNING command_id",
                columns,
            )
        }
        retry = {
            row[0]
            for row in conn.execute(
                "UPDATE deliveries d SET status = u.st, send_after = u.sa, reason = u.why, "
                "attempts = 0, source_topic = u.stp, source_partition = u.spa, "
                "source_offset = u.sof, raw_key = u.rk, raw_value = u.rv, updated_at = now() "
                f"FROM {unnest} WHERE d.command_id = u.id AND d.status = 'failed' "
                "AND NOT (u.id = ANY(%s)) RETURNING d.command_id",
                (*columns, list(fresh)),
            )
        }
        return fresh | retry

    # -------------------------------------------------------------------- send

    def _send(self, decision: Decision) -> Result:
        outgoing = decision.outgoing
        assert outgoing is not None
        sender = self.senders[outgoing.channel]

        def before_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            reason = error.reason if isinstance(error, SendError) else error
            log.info(
                "send %s attempt %d failed: %s", outgoing.command_id, state.attempt_number, reason
            )

        retrying = self.backoff.retrying(
            lambda exc: isinstance(exc, SendError) and not exc.permanent, before_retry
        )
        try:
            provider_id = retrying(sender.send, outgoing)
        except SendError as exc:
            reason = exc.reason
        except Exception as exc:  # a sender bug fails this message, not the batch
            reason = f"{type(exc).__name__}: {exc}"
            log.exception("send %s: unexpected error", outgoing.command_id)
        else:
            return Result(decision, "sent", _attempts(retrying), provider_message_id=provider_id)
        attempts = _attempts(retrying)
        return Result(decision, "failed", attempts, f"{reason} (after {attempts} attempts)")

    def perform(self, prepared: Any) -> None:
        """Claim, send and record in chunks of ``send_concurrency``: a crash can leave
        at most one chunk in doubt (``sending``), not a whole batch."""
        decisions: list[Decision] = prepared or []
        size = self.settings.send_concurrency
        for start in range(0, len(decisions), size):
            chunk = decisions[start : start + size]
            claimed = _Claim(self, chunk)
            self.record(claimed)
            mine = [d for d in chunk if d.item.record.command_id in claimed.ids]
            if len(mine) < len(chunk):
                self.metrics.duplicates.labels(self.name).inc(len(chunk) - len(mine))
            if mine:
                self.record(_Finish(self, self._send_all(mine)))

    def _send_all(self, decisions: list[Decision]) -> list[Result]:
        to_send = [d for d in decisions if d.status == "sending"]
        sent = {r.decision.item.record.command_id: r for r in self.pool.map(self._send, to_send)}
        return [
            sent.get(d.item.record.command_id) or Result(d, d.status, reason=d.reason)
            for d in decisions
        ]

    # ------------------------------------------------------------------ record

    def apply(
        self, conn: psycopg.Connection, items: list[CommandItem], performed: Any
    ) -> list[Emit]:
        """Everything was recorded chunk by chunk; the batch commits only its offsets."""
        return []

    def _finish(self, conn: psycopg.Connection, results: list[Result]) -> list[Emit]:
        final = [r for r in results if r.status in ("sent", "failed")]
        if final:
            conn.execute(
                "UPDATE deliveries d SET status = u.st, attempts = u.att, reason = u.why, "
                "provider_message_id = u.pid, updated_at = now() "
                "FROM unnest(%s::text[], %s::text[], %s::int[], %s::text[], %s::text[]) "
                "AS u(id, st, att, why, pid) WHERE d.command_id = u.id",
                (
                    [r.decision.item.record.command_id for r in final],
                    [r.status for r in final],
                    [r.attempts for r in final],
                    [r.reason for r in final],
                    [r.provider_message_id for r in final],
                ),
            )
        now = datetime.now(UTC)
        emits: list[Emit] = []
        for result in results:
            command = result.decision.item.record
            assert isinstance(command, SendMessage)
            self.metrics.messages.labels(command.channel.value, result.status).inc()
            self.metrics.commands_applied.labels(self.name, "SendMessage").inc()
            if result.status == "sent":
                emits.append(
                    emit_outcome(
                        MessageSent(
                            command_id=command.command_id,
                            member_id=command.member_id,
                            occurred_at=now,
                            channel=command.channel,
                            template_id=command.template_id,
                            provider_message_id=result.provider_message_id,
                        ),
                        command.member_id,
                    )
                )
            elif result.status == "failed":
                reason = result.reason or "failed"
                emits.append(
                    emit_outcome(
                        MessageFailed(
                            command_id=command.command_id,
                            member_id=command.member_id,
                            occurred_at=now,
                            channel=command.channel,
                            template_id=command.template_id,
                            reason=reason,
                            attempts=result.attempts,
                        ),
                        command.member_id,
                    )
                )
                letter: DeadLetter = result.decision.item.dead_letter(SendError(reason), self.group)
                emits.append(Emit.dead(letter))
                self.metrics.dead_letters.labels(self.name).inc()
        return emits

    # -------------------------------------------------------- delayed messages

    def idle(self, conn: psycopg.Connection) -> Any:
        """Send marketing messages whose quiet hours are over. Claimed with ``SKIP
        LOCKED`` (several notify processes never send one twice) and decided again in
        the claiming transaction: the subscription in force *now* counts, and a
        template that no longer renders fails the row there, with its outcome."""
        due = _ClaimDue(self)
        self.record(due)
        if due.sending:
            log.info("sending %d messages delayed by quiet hours", len(due.sending))
            self.record(_Finish(self, self._send_all(due.sending)))
        return None

    def _claim_due(self, conn: psycopg.Connection) -> tuple[list[Decision], list[Emit]]:
        rows = conn.execute(
            "SELECT command_id, member_id, channel, template_id, params, marketing, "
            "source_topic, source_partition, source_offset, raw_key, raw_value, created_at "
            "FROM deliveries WHERE status = 'scheduled' AND send_after <= now() "
            "ORDER BY send_after LIMIT 200 FOR UPDATE SKIP LOCKED"
        ).fetchall()
        if not rows:
            return [], []
        items = []
        for cid, member, channel, template, params, marketing, st, sp, so, rk, rv, at in rows:
            # Rebuilt from a row written when the command was decoded (and validated);
            # the row keeps no offer or source event, which sending does not need.
            command = SendMessage.model_construct(
                command_id=cid,
                member_id=member,
                offer_id="",
                source_event_id="",
                replay=False,
                issued_at=at,
                channel=Channel(channel),
                template_id=template,
                params=params,
                marketing=marketing,
            )
            items.append(CommandItem(st or "", sp or 0, so or 0, rk, rv, command))
        subscribed = self._subscriptions(conn, sorted({item.record.member_id for item in items}))
        now = datetime.now(UTC)
        decisions = [self._decide(item, subscribed, now, due=True) for item in items]
        conn.execute(
            "UPDATE deliveries d SET status = u.st, reason = u.why, updated_at = now() "
            "FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(id, st, why) "
            "WHERE d.command_id = u.id",
            (
                [d.item.record.command_id for d in decisions],
                [d.status for d in decisions],
                [d.reason for d in decisions],
            ),
        )
        settled = [Result(d, d.status, reason=d.reason) for d in decisions if d.status != "sending"]
        sending = [d for d in decisions if d.status == "sending"]
        return sending, self._finish(conn, settled) if settled else []

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for sender in self.senders.values():
            sender.close()


class _Claim:
    """Work for ``record``: write the chunk's delivery rows; remembers which are ours."""

    def __init__(self, handler: NotifyHandler, decisions: list[Decision]) -> None:
        self.handler, self.decisions = handler, decisions
        self.ids: set[str] = set()

    def __call__(self, conn: psycopg.Connection) -> list[Emit]:
        self.ids = self.handler._claim(conn, self.decisions)
        return []


class _Finish:
    """Work for ``record``: the chunk's final statuses and its outcomes."""

    def __init__(self, handler: NotifyHandler, results: list[Result]) -> None:
        self.handler, self.results = handler, results

    def __call__(self, conn: psycopg.Connection) -> list[Emit]:
        return self.handler._finish(conn, self.results)


class _ClaimDue:
    """Work for ``record``: claim the due delayed rows, settle those that must not go
    out (suppressed, failed) with their outcomes; keeps the ones to send."""

    def __init__(self, handler: NotifyHandler) -> None:
        self.handler = handler
        self.sending: list[Decision] = []

    def __call__(self, conn: psycopg.Connection) -> list[Emit]:
        self.sending, emits = self.handler._claim_due(conn)
        return emits

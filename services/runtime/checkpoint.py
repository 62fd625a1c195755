"""The one checkpoint protocol of every downstream consumer.

Two runtimes store a consumer's position with its effects: the Kafka-to-Kafka stream
runtime (outputs, changelog and offsets in one Kafka transaction,
:mod:`services.runtime.stream`) and the PostgreSQL sink (effects, outbox and offsets
in one database transaction, :mod:`services.runtime.pgsink`). They differ in *how*
a batch is made durable; *when* a batch may be applied, what happens after a failure
and when the worker says it is ready are written here, once, in
:class:`CheckpointWorker`, which both subclass.

The protocol (the invariants the code enforces, not only the tests):

* **A partition is applied only from a position the worker set itself.** On
  assignment and after every failure, a partition is *rewinding*: paused, its
  records dropped if any still arrive, until the worker has read its stored offset
  from the offset store (Kafka's committed offsets, or ``consumer_offsets`` in
  PostgreSQL) and sought the consumer there. Only then is it resumed. Every batch
  applied since came from that position, and the store's commit moves the stored
  offset only by what was applied. A failure to read the stored offsets or to seek
  leaves the partition paused and is tried again on the next step: never does the
  worker "read on" from wherever the consumer happened to be (that silent skip lost
  101 credits during a 20-second PostgreSQL outage).
* **A failure that is not the record's is transient:** whatever was not committed
  is discarded (the store aborts), every assigned partition rewinds, the worker
  backs off (0.5 s doubling to ``max_backoff_s``) and tries again; ``/readyz``
  says why meanwhile. Nothing is dead-lettered for it, nothing is skipped.
  A record's own failure is the store's to dead-letter, with its offset advance in
  the same atomic unit.
* **A fatal failure** (:class:`CheckpointError`: fenced by a newer instance, a fatal
  client error, a wrong topic layout) ends :meth:`CheckpointWorker.run` with the
  exception; its ``exit_code`` is what the process exits with.
* **Idle, the stored offset follows the position.** A read_committed consumer steps
  over records no consumer is given (a transaction's commit or abort marker, an
  aborted transaction's records), so after the last record of a transactional topic
  its position is one past the stored offset, for good: lag 1 on every partition,
  an alarm on every dashboard (KAFKA-6607). Once a poll returns nothing and nothing
  is pending, a partition whose position is past its stored offset has that position
  stored (:meth:`CheckpointWorker._store_position`, the store's own atomic unit), as
  Kafka Streams does since apache/kafka#8040: every record delivered below it was
  applied and committed, so nothing is skipped, and Kafka's tool and the lag
  monitor read 0.
* **Honest health:** :meth:`CheckpointWorker.not_ready` is ``None`` only while the
  loop polls, no partition is rewinding or failing, and every dependency answers
  its probe (:mod:`services.runtime.health`): an outage of PostgreSQL or of the
  brokers turns ``/readyz`` false within seconds, whether the worker has traffic
  or not.

Modelled on Quix Streams' ``checkpointing/checkpoint.py`` (one commit owns
changelog, flush and offsets, in order) and on Kafka Streams' task lifecycle, where
a task that failed is closed dirty and revived from its committed offsets.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from services.runtime.health import Dependencies

log = logging.getLogger(__name__)

TopicKey = tuple[str, int]

EXIT_FAILED = 1
EXIT_TEMPFAIL = 75
"""EX_TEMPFAIL: the worker could not go on now; started again, it resumes."""


class CheckpointError(RuntimeError):
    """The worker cannot go on; the process exits with ``exit_code``."""

    exit_code = EXIT_FAILED


class RestartNeededError(CheckpointError):
    """The worker's client is in a state only a new process gets out of (a transaction
    that can neither commit nor abort); started again, it resumes from the stored
    offsets."""

    exit_code = EXIT_TEMPFAIL


_exit_process = False


def exit_process_on_restart(enabled: bool = True) -> None:
    """In a service process (not a test or a library caller): a worker that needs a new
    process ends this one at once with :data:`EXIT_TEMPFAIL`, without closing its
    clients: closing a wedged consumer blocks (it waits on the coordinator that does
    not answer it), and the supervisor is waiting to start the new one."""
    global _exit_process  # noqa: PLW0603  (one switch per process, set by its entry point)
    _exit_process = enabled


def exit_code(exc: BaseException) -> int:
    """The process's exit code for a worker that stopped with ``exc``."""
    return exc.exit_code if isinstance(exc, CheckpointError) else EXIT_FAILED


def backoff_s(failures: int, ceiling: float) -> float:
    """0.5 s, doubling per consecutive failure, at most ``ceiling``."""
    return float(min(ceiling, 0.5 * 2.0 ** min(max(failures, 1) - 1, 8)))


class LoopConfig(Protocol):
    """What the loop takes from a worker's configuration (``PgSinkConfig``,
    ``StreamConfig``)."""

    @property
    def group(self) -> str: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def poll_timeout_s(self) -> float: ...
    @property
    def stale_after_s(self) -> float: ...
    @property
    def max_backoff_s(self) -> float: ...


class CheckpointWorker(ABC):
    """The consume loop, the fence, the rewind and the readiness rule of a consumer
    whose positions live in an offset store; a subclass is the store.

    The subclass implements :meth:`_stored_offsets` (where each partition resumes),
    :meth:`_process` (apply a batch of admitted records), :meth:`_discard` (drop what
    was not committed) and may override :meth:`_after_poll` (timed work, commits
    that are due) and :meth:`_rewound` (e.g. restore state).
    """

    def __init__(
        self,
        loop: LoopConfig,
        *,
        dependencies: Dependencies | None = None,
        needs_assignment: bool = True,
        stop: threading.Event | None = None,
    ) -> None:
        self.group = loop.group
        self.batch_size = loop.batch_size
        self.poll_timeout_s = loop.poll_timeout_s
        self.stale_after_s = loop.stale_after_s
        self.max_backoff_s = loop.max_backoff_s
        self.dependencies = dependencies
        self.needs_assignment = needs_assignment
        self.stop_event = stop or threading.Event()
        self._consumer: Consumer | None = None
        self._stored: dict[TopicKey, int | None] = {}
        """Assigned partitions and the next offset their store holds (``None``: none)."""
        self._rewinding: set[TopicKey] = set()
        self._assigned = threading.Event()
        self._failures = 0
        self._failing: str | None = None
        self._failed: BaseException | None = None
        self._last_progress = 0.0
        self._outside_group_since: float | None = None
        self._rewind_failing_since: float | None = None
        self._next_position_check = 0.0

    # ------------------------------------------------------------ store hooks

    @abstractmethod
    def _stored_offsets(self, keys: Sequence[TopicKey]) -> dict[TopicKey, int | None]:
        """The next offset to read per partition, as the store holds it (``None``:
        nothing stored: from the beginning)."""

    @abstractmethod
    def _process(self, messages: list[Message]) -> None:
        """Apply records of partitions that are not rewinding (they start at, or after,
        the stored offset); make them durable now or at :meth:`_after_poll`."""

    @abstractmethod
    def _store_position(self, ahead: dict[TopicKey, int]) -> None:
        """Idle and nothing pending: make ``ahead`` (positions past the stored offsets,
        over records no consumer is given) the stored offsets, atomically as a batch's
        offsets are; raise on failure (transient: discard and rewind)."""

    @abstractmethod
    def _discard(self) -> None:
        """After a failure: drop everything not committed (abort the transaction,
        forget staged state); the partitions rewind next."""

    def _after_poll(self, messages: list[Message]) -> None:
        """After every poll, records or not: commit what is due, timed work."""
        return None

    def _rewound(self, keys: Sequence[TopicKey]) -> None:
        """Called once ``keys`` were sought to their stored offsets, before resuming."""
        return None

    def _is_fatal(self, exc: BaseException) -> bool:
        return isinstance(exc, CheckpointError)

    def _busy(self) -> str | None:
        """A store's own reason not to be ready (e.g. restoring state)."""
        return None

    # ----------------------------------------------------------------- health

    @property
    def failure(self) -> BaseException | None:
        """What ended :meth:`run`, if anything did."""
        return self._failed

    def not_ready(self) -> str | None:
        """``None`` while the loop polls, every partition is served from its stored
        offset and every dependency answers."""
        if self._failed is not None:
            return f"stopped: {self._failed!r}"
        if self._consumer is None:
            return "starting"
        stale = time.monotonic() - self._last_progress > self.stale_after_s
        down = self.dependencies.not_ready() if self.dependencies is not None else None
        reasons = (
            (self._failing is not None, f"failing, retrying: {self._failing}"),
            (down is not None, str(down)),
            (bool(self._rewinding), f"rewinding {describe(self._rewinding)} to stored offsets"),
            (self.needs_assignment and not self._assigned.is_set(), "waiting for partitions"),
            (
                self._outside_group_since is not None
                and time.monotonic() - self._outside_group_since > 15,
                "not a member of the consumer group",
            ),
            (stale, f"no progress for {self.stale_after_s:.0f}s"),
        )
        busy = self._busy()
        if busy is not None:
            return busy
        return next((reason for failing, reason in reasons if failing), None)

    # ---------------------------------------------------------------- the loop

    def run(self) -> None:
        """Start, step until stopped (or :meth:`_done`), finish; then close. Raises
        when the worker cannot go on (the entry point exits with its ``exit_code``)."""
        try:
            self.start()
            while not self.stop_event.is_set():
                self.step()
                if self._done():
                    break
            self._finish()
        except BaseException as exc:
            self._failed = exc
            if _exit_process and isinstance(exc, RestartNeededError):
                log.critical("%s; exiting with %d", exc, EXIT_TEMPFAIL)
                logging.shutdown()
                os._exit(EXIT_TEMPFAIL)
            self._abandon()
            raise
        finally:
            if self.dependencies is not None:
                self.dependencies.stop()
            self.close()

    @abstractmethod
    def start(self) -> None:
        """Build the clients and subscribe (or assign)."""

    @abstractmethod
    def close(self) -> None:
        """Release the clients."""

    def _done(self) -> bool:
        """A bounded job says when it is done; a live worker never is."""
        return False

    def _finish(self) -> None:
        """On a clean stop: commit what is open."""
        return None

    def _abandon(self) -> None:
        """On the way out after a failure: drop what is open, quietly."""
        return None

    def step(self, timeout: float | None = None) -> int:
        """Rewind what must be, poll once, apply, commit what is due; returns how many
        records the poll returned. A transient failure discards, rewinds and backs
        off here; a fatal one raises."""
        consumer = self._consumer
        assert consumer is not None, "start() first"
        if self.dependencies is not None:
            self.dependencies.start()  # idempotent: probing from the first step on
        if self._rewinding and not self._rewind():
            self._check_rewind_stuck()
            self._back_off()  # then poll anyway: callbacks and the group are served
        self._check_membership()
        try:
            messages = consumer.consume(
                self.batch_size, self.poll_timeout_s if timeout is None else timeout
            )
            admitted = self._admit(messages)
            if admitted:
                self._process(admitted)
            self._after_poll(messages)
            if not messages:
                self._follow_position()
        except Exception as exc:
            if self._is_fatal(exc):
                raise
            self._fail(exc)
            return 0
        self._last_progress = time.monotonic()
        if self._failing is not None and self._healthy_again(messages):
            self._failures = 0
            self._failing = None
        return len(messages)

    commits_position = True
    """Idle, store the consumer's position past records no consumer is given (a bounded
    job, which drops records past its end, does not)."""
    POSITION_CHECK_S = 1.0

    def _uncommitted(self) -> bool:
        """Whether records were applied that are not committed yet (an open
        transaction): the position is then ahead for a reason of its own."""
        return False

    def _follow_position(self) -> None:
        """Idle: store the position of each partition that is past its stored offset
        (see the module's docstring); at most once per ``POSITION_CHECK_S``."""
        consumer = self._consumer
        now = time.monotonic()
        if not self.commits_position or consumer is None or now < self._next_position_check:
            return
        self._next_position_check = now + self.POSITION_CHECK_S
        keys = [key for key in self._stored if key not in self._rewinding]
        if not keys or self._uncommitted():
            return
        ahead: dict[TopicKey, int] = {}
        for tp in consumer.position([TopicPartition(t, p) for t, p in keys]):
            key = (tp.topic, tp.partition)
            stored = self._stored[key]
            if tp.error is None and tp.offset >= 0 and (stored is None or tp.offset > stored):
                ahead[key] = tp.offset
        if ahead:
            self._store_position(ahead)
            log.debug("%s: idle; stored positions %s", self.group, ahead)

    joins_group = True
    """A live worker is a member of its consumer group (a bounded job is not)."""
    REJOIN_TIMEOUT_S = 15.0

    def _check_membership(self) -> None:
        """A consumer that is no member of its group while the brokers answer has
        wedged: seen after the only broker hung (SIGSTOP) and came back, when a
        consumer's coordinator connection timed out mid-handshake and it never joined
        again, its partitions unread and nothing in its log. A new process joins;
        nothing is lost (it starts from the stored offsets)."""
        consumer = self._consumer
        if consumer is None or not self.joins_group:
            return
        down = self.dependencies.down() if self.dependencies is not None else {}
        if consumer.memberid() or "Kafka" in down:
            self._outside_group_since = None
            return
        now = time.monotonic()
        if self._outside_group_since is None:
            self._outside_group_since = now
        elif now - self._outside_group_since > self.REJOIN_TIMEOUT_S:
            raise RestartNeededError(
                f"{self.group}: not a member of the group for {self.REJOIN_TIMEOUT_S:.0f}s "
                "while Kafka answers: the consumer is wedged; a new process rejoins"
            )

    def _check_rewind_stuck(self) -> None:
        """A rewind that keeps failing while every dependency answers its probe means
        this process's client is wedged (seen: the rules worker's ``committed()``
        timing out for minutes after the only broker was killed and restarted, while
        fresh clients were served at once): a new process rewinds from the same
        stored offsets."""
        now = time.monotonic()
        down = self.dependencies.down() if self.dependencies is not None else {}
        if down or self._rewind_failing_since is None:
            self._rewind_failing_since = None if down else now
            return
        if now - self._rewind_failing_since > self.REJOIN_TIMEOUT_S:
            raise RestartNeededError(
                f"{self.group}: cannot rewind for {self.REJOIN_TIMEOUT_S:.0f}s while every "
                f"dependency answers ({self._failing}): the client is wedged; a new process "
                "rewinds"
            )

    def _healthy_again(self, messages: list[Message]) -> bool:
        """After a failure: healthy once a poll went through without one."""
        return True

    def _admit(self, messages: list[Message]) -> list[Message]:
        """The records that may be applied: of an assigned partition that is not
        rewinding, at or past its stored offset. Errors of the consumer are raised
        (fatal) or logged (librdkafka retries them by itself)."""
        admitted: list[Message] = []
        stored, rewinding = self._stored, self._rewinding
        for message in messages:
            error = message.error()
            if error is not None:
                self._consumer_error(message, error)
                continue
            where: TopicKey = (message.topic(), message.partition())  # type: ignore[assignment]
            if where not in stored or where in rewinding:
                continue  # revoked, or to be read again from the stored offset
            start = stored[where]
            if start is not None and message.offset() < start:  # type: ignore[operator]
                continue  # applied by an earlier commit
            admitted.append(message)
        return admitted

    def _consumer_error(self, message: Message, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise CheckpointError(f"{self.group}: fatal consumer error: {error}")
        if error.code() == KafkaError._AUTO_OFFSET_RESET:
            # The stored offset is not in the log (retention, truncation, a restored
            # database): reading on from anywhere else would skip or repeat records.
            where = (str(message.topic()), int(message.partition() or 0))
            raise CheckpointError(
                f"{self.group}: {where[0]}[{where[1]}] cannot be read from its stored offset "
                f"{self._stored.get(where)} ({error.str()}); the partition's log no longer "
                "holds it: resolve by hand (docs/operations.md), nothing was skipped"
            )
        log.warning("%s: consumer error %s", self.group, error)

    def _fail(self, exc: BaseException) -> None:
        """A transient failure: discard what is not committed, rewind every assigned
        partition (paused until that succeeds), back off."""
        self._failures += 1
        self._failing = f"{type(exc).__name__}: {exc}".strip()[:300]
        log.warning(
            "%s: batch failed (%s); discarding what is not committed and rewinding to the "
            "stored offsets",
            self.group,
            self._failing,
            exc_info=self._failures == 1,
        )
        try:
            self._discard()
        finally:
            self._begin_rewind(list(self._stored))
        if self._rewind():
            self._back_off()

    def _back_off(self) -> None:
        self.stop_event.wait(backoff_s(self._failures, self.max_backoff_s))

    # ------------------------------------------------------------------ fence

    def _begin_rewind(self, keys: Iterable[TopicKey]) -> None:
        """Pause ``keys``: nothing of theirs is applied until :meth:`_rewind` sought
        them to their stored offsets."""
        keys = [key for key in keys if key in self._stored]
        if not keys:
            return
        self._rewinding.update(keys)
        if self._consumer is not None:
            try:
                self._consumer.pause([TopicPartition(t, p) for t, p in keys])
            except Exception:  # the fence drops their records anyway
                log.warning("%s: could not pause %s", self.group, describe(keys), exc_info=True)

    def _rewind(self) -> bool:
        """Seek every rewinding partition to its stored offset and resume it; False
        (they stay paused, tried again next step) when the store or the consumer
        cannot say or do it now."""
        consumer = self._consumer
        self._rewinding.intersection_update(self._stored.keys())
        if not self._rewinding or consumer is None:
            return True
        try:
            assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        except Exception:  # the consumer is closing: nothing to rewind
            return False
        gone = [TopicPartition(t, p) for t, p in self._rewinding - assigned]
        if gone:  # taken away without our callback seeing it: not ours to seek
            self._revoked_partitions(gone)
        keys = sorted(self._rewinding)
        if not keys:
            return True
        try:
            stored = self._stored_offsets(keys)
            for topic, partition in keys:
                offset = stored.get((topic, partition))
                target = OFFSET_BEGINNING if offset is None else offset
                consumer.seek(TopicPartition(topic, partition, target))
            self._rewound(keys)
        except Exception as exc:
            if self._is_fatal(exc):
                raise
            self._failures += 1
            self._failing = f"cannot rewind: {type(exc).__name__}: {exc}".strip()[:300]
            log.warning(
                "%s: cannot rewind %s to the stored offsets (%s); they stay paused",
                self.group,
                describe(keys),
                exc,
            )
            return False
        self._rewind_failing_since = None
        for key in keys:
            self._stored[key] = stored.get(key)
        consumer.resume([TopicPartition(t, p) for t, p in keys])
        self._rewinding.difference_update(keys)
        log.info(
            "%s: resumed %s at stored offsets %s",
            self.group,
            describe(keys),
            {f"{t}[{p}]": stored.get((t, p)) for t, p in keys},
        )
        return True

    def _take(
        self,
        partitions: list[TopicPartition],
        assign: Callable[[list[TopicPartition]], None],
    ) -> None:
        """New partitions (from the assignment callback): assigned at their stored
        offsets; if the store cannot say them now (PostgreSQL away, the coordinator
        moving), assigned paused and rewound by a later step instead of blocking the
        callback or starting anywhere else."""
        keys = [(tp.topic, tp.partition) for tp in partitions]
        try:
            stored: dict[TopicKey, int | None] | None = self._stored_offsets(keys)
        except Exception as exc:
            if self._is_fatal(exc):
                raise
            log.warning("%s: stored offsets of %s unavailable (%s); assigned paused",
                        self.group, describe(keys), exc)  # fmt: skip
            stored = None
        for tp, key in zip(partitions, keys, strict=True):
            offset = stored.get(key) if stored is not None else None
            self._stored[key] = offset
            # Unknown yet: a placeholder position (paused below, sought before any read)
            # rather than none, which would make librdkafka fetch Kafka's committed
            # offset and refuse seeks until it arrived.
            tp.offset = OFFSET_BEGINNING if offset is None else offset
        assign(partitions)
        self._assigned.set()
        if stored is None:
            self._begin_rewind(keys)
            return
        try:
            self._rewound(keys)
        except Exception as exc:
            if self._is_fatal(exc):
                raise
            log.warning("%s: %s not ready (%s); paused until rewound", self.group,
                        describe(keys), exc)  # fmt: skip
            self._begin_rewind(keys)
        else:
            # librdkafka keeps an application pause across unassign and assign: a
            # partition revoked while rewinding would come back paused for good.
            self._consumer_resume(partitions)
            log.info("%s: assigned %s at stored offsets %s", self.group, describe(keys),
                     {f"{t}[{p}]": self._stored[(t, p)] for t, p in keys})  # fmt: skip

    def _consumer_resume(self, partitions: Sequence[TopicPartition]) -> None:
        if self._consumer is not None:
            self._consumer.resume([TopicPartition(tp.topic, tp.partition) for tp in partitions])

    def _revoked_partitions(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._stored.pop(key, None)
            self._rewinding.discard(key)

    def _committed_offsets(self, advance: dict[TopicKey, int]) -> None:
        """The store made ``advance`` durable: those are the partitions' stored offsets."""
        for key, offset in advance.items():
            if key in self._stored:
                self._stored[key] = offset


def describe(where: Iterable[TopicKey]) -> str:
    """``topic[0, 1], other[2]``: partitions for a log line."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in where:
        by_topic.setdefault(topic, []).append(partition)
    return ", ".join(f"{t}{sorted(p)}" for t, p in sorted(by_topic.items())) or "-"

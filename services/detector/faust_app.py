"""The detector's Faust app class: at-least-once, but reading only committed data.

faust-streaming 0.15.3 reads ``read_committed`` only in its ``exactly_once`` mode
(which has open duplicate bugs, so we do not use it). Our inputs are written in
Kafka transactions (a collector run lands whole; a run that fails is aborted), so
a worker must never see an aborted or still-open transaction. aiokafka hands the
isolation level to its fetcher when the consumer starts, so setting it on the
fresh consumer is enough; the detector's integration tests prove it with an aborted
transaction. (Faust is the detector's runtime only; downstream consumers run on
services/runtime/stream.py.)

The consumer also replaces Faust's choice of the offset to commit, which stalled
for good after an aborted transaction (see ``_ReadCommittedConsumer._new_offset``).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import ssl
from collections.abc import Collection, Iterator
from typing import Any, cast

import faust
from aiokafka.errors import IllegalStateError  # type: ignore[import-untyped]
from faust.exceptions import ConsumerNotStarted
from faust.transport.drivers import aiokafka as faust_aiokafka

from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)


class _ReadCommittedThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"  # read by AIOKafkaConsumer.start()
        return consumer

    async def positions(self, tps: Collection[Any], timeout_s: float) -> dict[Any, int]:
        """aiokafka's position of each of ``tps`` still assigned, asked on this thread
        (where aiokafka runs) in one call, as Faust's own ``position`` is."""
        return cast(dict[Any, int], await self.call_thread(self._positions, tps, timeout_s))

    async def _positions(self, tps: Collection[Any], timeout_s: float) -> dict[Any, int]:
        consumer = self._ensure_consumer()
        assigned = consumer.assignment()
        found: dict[Any, int] = {}
        for tp in tps:
            if tp not in assigned:
                continue
            try:  # waits while the position is being reset: bounded here, on this loop
                found[tp] = await asyncio.wait_for(consumer.position(tp), timeout_s)
            except (IllegalStateError, TimeoutError):
                continue  # revoked meanwhile, or no position yet: the next round asks again
        return found


class _ReadCommittedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[Any]:
        """Faust's (every partition with acks), and every assigned partition with a
        commit limit: a limit moved while idle (``InOrder.step_over``) is worth a
        commit though nothing was acked since the last one."""
        tps = set(self._acked)
        limits = cast(ReadCommittedApp, self.app).commit_limits
        if limits:
            try:
                assigned = self.assignment()
            except ConsumerNotStarted:
                assigned = set()
            tps.update(tp for tp in list(limits) if tp in assigned)
        return (tp for tp in tps if topics is None or tp in topics or tp.topic in topics)

    def _new_offset(self, tp: Any) -> int | None:
        """The offset to commit for ``tp``: below its lowest delivered, unacked message.

        Faust's own version needs every offset up to the commit point either acked
        or recorded as a gap, and it misses gaps: never after offset 0 (``if gap > 1
        and r_offset`` in ``_drain_messages``), so a transaction aborted right after
        a partition's first record stopped the group's commits for good (found by
        tests/integration/detector/test_worker.py). A ``read_committed`` reader
        never receives control records or aborted data, so "no gap" is the wrong
        default. Instead: messages reach the streams in offset order per partition
        and every delivered message is tracked until it is acked, so every offset
        below the lowest tracked one was processed or never delivered. Commit up to
        there, or past the highest ack when nothing is in flight. (Messages still
        queued for the stream are not tracked yet, but they come after every acked
        one of their partition.) Never past the app's ``commit_limits``, when set.

        With ``commit_limits``, a partition with nothing acked since its last commit
        and nothing in flight commits its limit: idle, the in-order guard moves the
        limit over the transaction markers and aborted records after the last record
        (``InOrder.step_over``), and this is how that reaches the group (KAFKA-6607).
        """
        acked: list[int] = self._acked[tp]
        acked.sort()
        in_flight = [m.offset for m in list(self._unacked_messages) if m.tp == tp]
        limits = cast(ReadCommittedApp, self.app).commit_limits
        if limits is None:
            if not acked:
                return None
            new = min(in_flight, default=acked[-1] + 1)
        else:  # an agent says what it has handled (services/detector/inorder.py)
            limit = limits.get(tp)
            if limit is None:
                return None
            new = min(min(in_flight, default=acked[-1] + 1 if acked else limit), limit)
        done = bisect.bisect_left(acked, new)
        self._acked_index[tp].difference_update(acked[:done])
        del acked[:done]
        self._gap[tp].chop(0, new)  # still filled by _drain_messages; keep it bounded
        committed = self._committed_offset[tp]
        return new if committed is None or new > committed else None


class ReadCommittedTransport(faust_aiokafka.Transport):
    """The aiokafka transport with the read_committed consumer; subclass to swap the producer."""

    Consumer = _ReadCommittedConsumer


class ReadCommittedApp(faust.App):
    """A ``faust.App`` whose worker consumer reads ``read_committed``."""

    transport_class: type[faust_aiokafka.Transport] = ReadCommittedTransport

    #: When set (by :class:`services.detector.inorder.InOrder`): per source partition,
    #: the offset below which every record has been handled. The consumer never
    #: commits past it, and commits nothing for a partition without one. Faust's acks
    #: alone are not enough: it acks messages it skips (an old generation's, or while
    #: its flow control is off) without handing them to the agent.
    commit_limits: dict[Any, int] | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_limits = None

    def _new_transport(self) -> Any:
        return self.transport_class(self.conf.broker_consumer, self)

    async def idle_positions(
        self, topics: Collection[str], timeout_s: float = 5.0
    ) -> dict[Any, int]:
        """aiokafka's position of each assigned partition of ``topics`` with no message in
        flight: the offset after the last record it handed to Faust, or past the
        transaction markers and aborted records it skipped after it (its fetcher steps
        over control batches). Asked on the consumer's thread (``ConsumerThread``, like
        Faust's own ``Consumer.position``); nothing of the consumer is changed. Empty
        while the worker rebalances or is not started.

        The position is only a bound to check, never a proof: records aiokafka handed
        over may still wait in Faust's buffers, or have been dropped by it
        (services/detector/inorder.py); ``InOrder.step_over`` asks the broker."""
        if self.rebalancing:
            return {}
        consumer = self.consumer
        try:
            assigned = consumer.assignment()
        except ConsumerNotStarted:
            return {}
        busy = {message.tp for message in list(consumer.unacked)}
        idle = sorted(tp for tp in assigned if tp.topic in topics and tp not in busy)
        if not idle:
            return {}
        thread = cast(_ReadCommittedThread, cast(Any, consumer)._thread)
        return await asyncio.wait_for(
            thread.positions(idle, timeout_s), timeout_s * (len(idle) + 1)
        )

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        """An agent that fails ends the worker (non-zero exit) instead of leaving a
        process that is up and derives nothing: Faust's default restarts the agent,
        and an error that recurs on every start (a changelog it cannot use) then
        looks healthy from outside. A supervisor restarts the worker."""
        await super()._on_agent_error(agent, exc)
        log.error("agent %s failed, stopping the worker: %r", getattr(agent, "name", agent), exc)
        await self.crash(exc)


def broker_credentials(settings: KafkaSettings) -> Any:
    """Faust's credentials for the same ``KAFKA_*`` settings the confluent clients use.

    ``None`` for PLAINTEXT; SASL over plain text or TLS; TLS with an optional client
    certificate. Every Faust worker passes this as ``broker_credentials`` so one set of
    environment variables configures every client of every service.
    """
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context: ssl.SSLContext | None = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH, cafile=settings.ssl_ca_location
        )
        if settings.ssl_certificate_location:
            context.load_cert_chain(
                settings.ssl_certificate_location,
                settings.ssl_key_location,
                settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else None,
            )
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    if not settings.sasl_mechanism:
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM")
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
        mechanism=settings.sasl_mechanism,
        ssl_context=context,
    )

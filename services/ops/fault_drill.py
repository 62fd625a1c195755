"""The fault matrix: the whole system under faults of what it runs on, and the
invariants checked after each one.

A drill runs on a private stack (one broker, a private PostgreSQL and Toxiproxy in
front of both, ``deploy/localstack.py start --proxy``) that its caller started: the
services reach Kafka and PostgreSQL through the proxies, so network faults apply to
them, while the drill's own checks go direct. Faults run one after another on one
running system; for each one the drill

1. sends a round of traffic onto ``social.events`` (links, group joins and leaves,
   likes and unlikes of fresh members, ``events_per_round`` events) spread over the
   fault, as the detector and the link service would write it;
2. injects the fault a few seconds in and heals it after its duration;
3. watches every service's ``/readyz`` and asks the ledger and read-model APIs
   twice a second, recording each status;
4. waits for the system to settle and checks the invariants on everything sent so
   far: every committed bonus command in the ledger exactly once with its amount
   (:func:`services.actions.reconcile.compare`, the reconciliation's own check), each
   member's balance what the offers give for what they did, the read model equal to
   the events, every message delivered once, nothing dead-lettered.

``tests/e2e/test_fault_matrix.py`` asserts the report; ``./run bench faults`` prints it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from pydantic import SecretStr

from services.actions import reconcile
from services.contracts import models as m
from services.contracts.codec import make_codec
from services.contracts.topics import DEADLETTER, EVENTS, TopicSettings
from services.demo import namespace
from services.ops import kafka_access
from services.ops.supervisor import Supervisor
from services.ops.system import Ports, service_specs
from services.runtime import kafka
from services.runtime.access import AccessSettings, SignedAuth, ensure_credential
from services.runtime.settings import DatabaseSettings, KafkaSettings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
OFFERS_DIR = ROOT / "deploy" / "demo" / "offers"
GROUPS_FILE = ROOT / "deploy" / "demo" / "groups.yaml"
DATABASE = "social_loyalty_faults"
VK_GROUP = 1001  # the group demo-join rewards
LINK_POINTS, JOIN_POINTS = 50, 20
LIKE_POINTS = (5, 1, 1)  # demo-likes: 5 for the first like, 1 for each next one
WATCHED = ("actions", "readmodel", "rules", "detector", "link", "collector", "rules-api")


# ------------------------------------------------------------------- traffic


@dataclass
class Member:
    """One member's activity in a round and what the demo offers give for it."""

    member_id: str
    user: str
    likes: int
    unlike: bool
    leaves: bool

    def events(self, at: datetime, post_base: int) -> list[m.DomainEvent]:
        """Link, join, likes, then perhaps an unlike and a leave, a millisecond apart."""

        def group(kind: type[m.DomainEvent], n: int, **object_: int) -> m.DomainEvent:
            moment = at + timedelta(milliseconds=n)
            return kind.build(
                network="vk",
                group_id=VK_GROUP,
                social_user_id=self.user,
                observed_at=moment,
                snapshot_at=moment,
                previous_snapshot_at=at - timedelta(minutes=5),
                **object_,
            )

        events: list[m.DomainEvent] = [
            m.ProfileLinked.build(
                network="vk",
                social_user_id=self.user,
                member_id=self.member_id,
                registration=False,
                observed_at=at,
                snapshot_at=at,
            ),
            group(m.GroupJoined, 1),
        ]
        events += [group(m.PostLiked, 2 + n, post_id=post_base + n) for n in range(self.likes)]
        if self.unlike:
            events.append(group(m.PostUnliked, 10, post_id=post_base + self.likes - 1))
        if self.leaves:
            events.append(group(m.GroupLeft, 11))
        return events

    @property
    def balance(self) -> int:
        earned = list(LIKE_POINTS[: self.likes])
        if self.unlike:
            earned.pop()
        return LINK_POINTS + (0 if self.leaves else JOIN_POINTS) + sum(earned)


def round_members(round_no: int, count: int) -> list[Member]:
    """``count`` fresh members for round ``round_no``: each links, joins and likes one to
    three posts; every second one takes a like back, every third one leaves."""
    return [
        Member(
            member_id=f"fault-{round_no}-{n}",
            user=str(700_000_000 + round_no * 1000 + n),
            likes=1 + n % 3,
            unlike=n % 2 == 1,
            leaves=n % 3 == 2,
        )
        for n in range(count)
    ]


# ------------------------------------------------------------------ watching


@dataclass
class Observations:
    """What the watchers saw during one fault."""

    ready: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, str] = field(default_factory=dict)
    """The last reason each service gave for not being ready."""

    def all_ready(self) -> bool:
        return all(samples and samples[-1][1] for samples in self.ready.values())

    def transitions(
        self, service: str, fault_at: float, healed_at: float
    ) -> tuple[float | None, float | None]:
        """Seconds from the fault until ``service``'s /readyz first said false, and from
        the heal until it said true for good (None: it never went false)."""
        samples = self.ready.get(service, [])
        went_false = next((t for t, ok in samples if t >= fault_at and not ok), None)
        if went_false is None:
            return None, None
        last_false = max(t for t, ok in samples if not ok)
        back = next((t for t, ok in samples if t > last_false and ok), None)
        return (
            round(went_false - fault_at, 1),
            None if back is None else round(max(0.0, back - healed_at), 1),
        )


@contextmanager
def watching(
    urls: Mapping[str, str], probes: Mapping[str, str], auth: httpx.Auth | None
) -> Iterator[Observations]:
    """Ask every ``/readyz`` and every probe URL twice a second while the block runs."""
    seen = Observations()
    stop = threading.Event()

    def ask(name: str, url: str, readiness: bool) -> None:
        """One URL twice a second on a thread of its own, so a hung answer delays
        only its own samples."""
        # probes wait out the APIs' own 5 s pool timeout, to see what they answer
        with httpx.Client(timeout=2.0 if readiness else 7.0) as http:
            while not stop.is_set():
                now = time.monotonic()
                if readiness:
                    try:
                        answer = http.get(url)
                        ok = answer.status_code == 200
                        if not ok:
                            seen.reasons[name] = str(answer.json().get("reason"))[:200]
                    except (httpx.HTTPError, ValueError) as exc:
                        ok = False
                        seen.reasons[name] = type(exc).__name__
                    seen.ready.setdefault(name, []).append((now, ok))
                else:
                    try:
                        response = http.get(url, auth=auth or httpx.USE_CLIENT_DEFAULT)
                        status = str(response.status_code)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    seen.statuses[f"{name} {status}"] += 1
                stop.wait(max(0.0, 0.5 - (time.monotonic() - now)))

    threads = [
        threading.Thread(target=ask, args=(name, url, readiness), daemon=True)
        for urls_, readiness in ((urls, True), (probes, False))
        for name, url in urls_.items()
    ]
    for thread in threads:
        thread.start()
    try:
        yield seen
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


# -------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[], None]
    heal: Callable[[], None]
    hold_s: float


@dataclass
class FaultReport:
    fault: str
    events: int
    commands: int
    ledger_entries: int
    lost: int
    duplicated: int
    wrong_amount: int
    balances_off: int
    dead_lettered: int
    read_model_off: int
    messages_off: int
    readiness: dict[str, tuple[float | None, float | None]]
    statuses: dict[str, int]
    settle_s: float
    not_ready_after: dict[str, str] = field(default_factory=dict)
    """Services still not ready a minute after the heal, with their last reason."""

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.split()[-1].startswith("5")
                   and not status.endswith(" 503"))  # fmt: skip

    @property
    def exact(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.wrong_amount
            or self.balances_off
            or self.dead_lettered
            or self.read_model_off
            or self.messages_off
        )


class FaultDrill:
    """One running system on a private stack, and the faults it goes through."""

    def __init__(
        self,
        stack_env: Mapping[str, str],
        proxied_kafka: str,
        proxied_database_url: str,
        work_dir: Path,
        *,
        prefix: str = "faults.",
        members_per_round: int = 65,
        ports: Ports | None = None,
    ) -> None:
        self.stack_env = dict(stack_env)
        self.prefix = prefix
        self.members_per_round = members_per_round
        self.work_dir = work_dir
        self.kafka_settings = KafkaSettings(
            bootstrap_servers=stack_env["KAFKA_BOOTSTRAP_SERVERS"],
            security_protocol=stack_env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=stack_env.get("KAFKA_SASL_MECHANISM") or None,
            sasl_username=stack_env.get("KAFKA_SASL_USERNAME") or None,
            sasl_password=SecretStr(stack_env.get("KAFKA_SASL_PASSWORD", "")) or None,
        )
        self.topics = TopicSettings(prefix=prefix)
        self.database_url = namespace.reset_database(
            DatabaseSettings(database_url=SecretStr(stack_env["DATABASE_URL"])), DATABASE
        )
        self.proxied_database_url = proxied_database_url.rsplit("/", 1)[0] + "/" + DATABASE
        self.proxied_kafka = proxied_kafka
        self.codec = make_codec(self.kafka_settings)
        self.ports = ports or Ports.from_env()
        self.members: list[Member] = []
        self.events_sent: list[m.DomainEvent] = []
        self.rounds = 0
        self.traffic_errors: list[str] = []
        self.supervisor: Supervisor | None = None
        self.credential = ""

    # ---------------------------------------------------------------- system

    def start(self) -> None:
        """Fresh topics, database and offers; every service up and ready."""
        namespace.reset_kafka(self.kafka_settings, self.topics)
        direct = {**os.environ, **self.stack_env, "DATABASE_URL": self.database_url,
                  "TOPIC_PREFIX": self.prefix}  # fmt: skip
        namespace.load_offers(direct, OFFERS_DIR)
        schema = AccessSettings().db_schema
        self.credential = ensure_credential(
            self.database_url, schema, "fault-drill", ["ledger:read", "readmodel:read"]
        )
        logins = kafka_access.system_logins(self.kafka_settings, self.prefix)
        state_dir = namespace.reset_state_dir(self.work_dir / "state")
        specs = service_specs(
            prefix=self.prefix,
            state_dir=state_dir,
            groups_file=GROUPS_FILE,
            ports=self.ports,
            kafka_logins=logins,
        )
        env = {
            **direct,
            "KAFKA_BOOTSTRAP_SERVERS": self.proxied_kafka,
            "DATABASE_URL": self.proxied_database_url,
        }
        self.supervisor = Supervisor(specs, state_dir / "logs", env=env)
        for name in self.supervisor.specs:
            self.supervisor.start(name)
        self.supervisor.watch()  # a worker that exits (75 after a broker outage) comes back

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop_all()

    def ready_urls(self) -> dict[str, str]:
        assert self.supervisor is not None
        return {
            name: str(spec.ready_url)
            for name, spec in self.supervisor.specs.items()
            if name in WATCHED and spec.ready_url
        }

    def probe_urls(self) -> dict[str, str]:
        return {
            "ledger": f"http://127.0.0.1:{self.ports.actions}/v1/members/fault-0-0/balance",
            "readmodel": f"http://127.0.0.1:{self.ports.readmodel}/v1/profiles/vk/700000000",
        }

    # --------------------------------------------------------------- traffic

    def send_round(self, duration_s: float) -> threading.Thread:
        """A round's events, produced evenly over ``duration_s`` on a thread."""
        self.rounds += 1
        members = round_members(self.rounds, self.members_per_round)
        now = datetime.now(UTC)
        per_member = [
            member.events(now + timedelta(seconds=n), post_base=1 + n * 10)
            for n, member in enumerate(members)
        ]
        self.members += members
        self.events_sent += [event for events in per_member for event in events]
        topic = self.topics.name(EVENTS)

        def produce() -> None:
            # The drill stands in for the detector, which retries until the broker is
            # back: a delivery may wait out the longest outage of the matrix.
            producer = kafka.producer(
                self.kafka_settings,
                "fault-drill",
                extra={"delivery.timeout.ms": 600_000, "log_level": 0},  # outages are expected
            )
            failed: list[str] = []

            def delivered(error: Any, _message: Any) -> None:
                if error is not None:
                    failed.append(str(error))

            pause = duration_s / max(1, len(per_member))
            for events in per_member:  # a member's events in order, members spread out
                for event in events:
                    value = self.codec.encode(event, topic)
                    producer.produce(topic, value, event.key().to_bytes(), on_delivery=delivered)
                producer.poll(0)
                time.sleep(pause)
            if producer.flush(660) != 0 or failed:
                self.traffic_errors.append(f"undelivered events: {failed[:3]}")

        thread = threading.Thread(target=produce, name="fault-traffic", daemon=True)
        thread.start()
        return thread

    # ---------------------------------------------------------------- checks

    def check(self) -> dict[str, Any]:
        """The invariants over everything sent so far."""
        commands = reconcile.committed_commands(
            self.kafka_settings, self.topics.name("loyalty.commands.bonus"), self.codec
        )
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            entries, skipped = reconcile.ledger_entries(conn, "actions")
            rec = reconcile.compare(commands, entries, skipped)
            balances = reconcile.balances(entries)
            expected = {member.member_id: member.balance for member in self.members}
            balances_off = sum(1 for k, v in expected.items() if balances.get(k, 0) != v)
            activity = {
                (str(user), str(kind)): int(count)
                for user, kind, count in conn.execute(
                    "SELECT social_user_id, event_type, count FROM readmodel.activity "
                    "WHERE network = 'vk'"
                )
            }
            delivered: dict[str, int] = dict(
                conn.execute(
                    "SELECT status, count(*) FROM actions.deliveries GROUP BY status"
                ).fetchall()
            )
        want_activity = Counter((e.social_user_id, type(e).__name__) for e in self.events_sent)
        read_model_off = sum(
            1 for key, n in want_activity.items() if activity.get(key, 0) != n
        ) + sum(1 for key in activity if key not in want_activity)
        messages = httpx.get(f"http://127.0.0.1:{self.ports.providers}/messages", timeout=10).json()
        per_key = Counter(str(message.get("key")) for message in messages)
        linked = len(self.members)
        messages_off = abs(len(per_key) - linked) + sum(n - 1 for n in per_key.values())
        effects = Counter((e.member_id, e.command_id) for e in entries)
        return {
            "commands": rec.commands,
            "entries": rec.entries,
            "lost": rec.missing,
            "duplicated": sum(n - 1 for n in effects.values()) + rec.extra,
            "wrong_amount": sum(1 for d in rec.differences if d.kind in ("amount", "member")),
            "balances_off": balances_off,
            "read_model_off": read_model_off,
            "messages_off": messages_off,
            "delivered": delivered,
            "dead_lettered": self.dead_letters(),
        }

    def dead_letters(self) -> int:
        consumer = kafka.consumer(self.kafka_settings, "fault-drill-dlq", extra={"log_level": 0})
        topic = self.topics.name(DEADLETTER)
        try:
            partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
            marks = [kafka.watermarks(consumer, topic, p) for p in partitions]
            return sum(max(0, high - low) for low, high in marks)
        finally:
            consumer.close()

    def settle(self, timeout_s: float = 240.0) -> tuple[dict[str, Any], float]:
        """Wait until everything sent is accounted for (or the time is up); returns the
        last check and how long it took."""
        started = time.monotonic()
        while True:
            found = self.check()
            done = not (found["lost"] or found["balances_off"] or found["read_model_off"]
                        or found["messages_off"])  # fmt: skip
            if done or time.monotonic() - started > timeout_s:
                return found, round(time.monotonic() - started, 1)
            time.sleep(1.0)

    # ----------------------------------------------------------------- a fault

    def run(self, fault: Fault, traffic_s: float = 12.0, lead_s: float = 3.0) -> FaultReport:
        """One round of traffic with ``fault`` in the middle of it; the report of it."""
        events_before = len(self.events_sent)
        auth = SignedAuth(self.credential) if self.credential else None
        with watching(self.ready_urls(), self.probe_urls(), auth) as seen:
            sender = self.send_round(traffic_s)
            time.sleep(lead_s)
            fault_at = time.monotonic()
            log.info("fault %s: injecting", fault.name)
            fault.inject()
            time.sleep(fault.hold_s)
            log.info("fault %s: healing", fault.name)
            fault.heal()
            healed_at = time.monotonic()
            sender.join(timeout=traffic_s + 700)
            if self.traffic_errors:
                raise RuntimeError(f"the drill's own traffic failed: {self.traffic_errors}")
            found, settle_s = self.settle()
            # readiness may come back after the data settled: watch up to a minute more
            deadline = healed_at + 60
            while time.monotonic() < deadline and not seen.all_ready():
                time.sleep(0.5)
            time.sleep(1.0)
        readiness = {name: seen.transitions(name, fault_at, healed_at) for name in seen.ready}
        still = {
            name: seen.reasons.get(name, "?")
            for name, samples in seen.ready.items()
            if samples and not samples[-1][1]
        }
        return FaultReport(
            fault=fault.name,
            events=len(self.events_sent) - events_before,
            commands=found["commands"],
            ledger_entries=found["entries"],
            lost=found["lost"],
            duplicated=found["duplicated"],
            wrong_amount=found["wrong_amount"],
            balances_off=found["balances_off"],
            dead_lettered=found["dead_lettered"],
            read_model_off=found["read_model_off"],
            messages_off=found["messages_off"],
            readiness=readiness,
            statuses=dict(seen.statuses),
            settle_s=settle_s,
            not_ready_after=still,
        )


# -------------------------------------------------------------------- matrix


def matrix(stack_dir: Path, database_url: str) -> list[Fault]:
    """The faults of the issue's matrix on the private stack in ``stack_dir`` (started
    with ``--proxy``), in the order they run."""
    from deploy import localstack

    proxy = localstack.proxy_endpoints(stack_dir)
    toxics = proxy.client()
    proxies = [name for name in (proxy.kafka_proxy, proxy.postgres_proxy) if name]

    def terminate_sessions() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (DATABASE,),
            )

    def add(kind: str) -> Callable[[], None]:
        def inject() -> None:
            for name in proxies:
                if kind == "latency":
                    toxics.add_latency(name, 500)
                else:
                    toxics.add_reset_peer(name, 0)

        return inject

    def clear() -> None:
        for name in proxies:
            for toxic in toxics.toxics(name):
                toxics.remove_toxic(name, toxic.name)

    def nothing() -> None:
        return None

    return [
        Fault(
            "PostgreSQL stopped 20 s",
            lambda: localstack.stop_postgres_cluster(stack_dir, "fast"),
            lambda: localstack.start_postgres_cluster(stack_dir),
            20,
        ),
        Fault(
            "PostgreSQL restarted (-m fast)",
            lambda: localstack.restart_postgres_cluster(stack_dir),
            nothing,
            0,
        ),
        Fault("sinks' sessions terminated", terminate_sessions, nothing, 0),
        Fault(
            "the only broker SIGKILLed 20 s",
            lambda: localstack.kill_broker(stack_dir),
            lambda: localstack.start_broker(stack_dir),
            20,
        ),
        Fault(
            "the broker SIGSTOPped 30 s",
            lambda: localstack.pause_broker(stack_dir),
            lambda: localstack.resume_broker(stack_dir, wait=True),
            30,
        ),
        Fault("500 ms latency to Kafka and PostgreSQL", add("latency"), clear, 8),
        Fault("connection resets to Kafka and PostgreSQL", add("reset"), clear, 5),
    ]

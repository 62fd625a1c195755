"""``./run demo``: the whole system on one machine, a scripted story, points credited.

It resets the demo's own namespace (topics, groups, database), loads the demo
offers, starts every service under the supervisor (simulated VK and OK, collector,
detector, read model, rules, actions with local message sinks, lag monitor),
links four members through the link API, plays the story of ``story.py`` against
the simulator and shows, as it flows, the runs collected, the events detected, the
points credited and the messages sent. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import psycopg
import typer
from psycopg.rows import dict_row
from rich.rule import Rule
from rich.table import Table

from services.actions.settings import ActionsSettings
from services.contracts.topics import TopicSettings
from services.demo import lag, namespace
from services.demo.story import LINKED, OK_GROUP, STORY, VK_GROUP, Change, Member, Step
from services.demo.watch import Watcher
from services.ops import kafka_access
from services.ops.chaos import ChaosMonkey, FailoverDrill
from services.ops.supervisor import ServiceFailedError, Supervisor
from services.ops.system import (
    DEMO_APPLE_CLIENT,
    DEMO_OK_CLIENT,
    DEMO_VK_ID_CLIENT,
    WORKERS_HELP,
    Ports,
    groups_at,
    service_specs,
    workers_option,
)
from services.runtime import kafka, terminal
from services.runtime.access import AccessSettings, CredentialError, SignedAuth, ensure_credential
from services.runtime.db import DatabaseUnavailableError, connect
from services.runtime.settings import DatabaseSettings, KafkaSettings
from services.simulator import identity_client as idc

ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = ROOT / "deploy" / "demo"
# Next to the stack it runs on (SL_STACK_DIR, as ./run and deploy/localstack.py use it).
STATE_DIR = Path(os.environ.get("SL_STACK_DIR") or ROOT / "deploy" / ".local") / "demo"

# Piped into a file or CI, one line per message, never wrapped at 80 columns.
console = terminal.console(highlight=False)


def _rule(title: str) -> None:
    """A heading rule across the terminal; in a file, 80 columns of it (the piped
    console is as wide as its longest line could be)."""
    console.print(Rule(title), width=None if console.is_terminal else 80)


class StoryFailedError(RuntimeError):
    """A step's effects did not show up in time; the message says what was missing."""


class Demo:
    def __init__(
        self,
        ports: Ports,
        step_timeout_s: float,
        credentials: dict[str, str] | None = None,
        database_url: str | None = None,
    ) -> None:
        self.ports = ports
        self.database_url = database_url
        self.step_timeout_s = step_timeout_s
        self.posts: dict[str, list[int]] = {"vk": [], "ok": []}
        self.http = httpx.Client(timeout=30)
        # The callers the APIs know: the Personal Account (links, sign-in) and an
        # operator's tool reading the ledger, each with its own credential and scopes.
        creds = credentials or {}
        self.pa = SignedAuth(creds["pa"]) if "pa" in creds else None
        self.operator = SignedAuth(creds["operator"]) if "operator" in creds else None
        # Called with the step number right after a step's changes, while they flow
        # through the services (the failover drill kills and revives there).
        self.after_changes: Callable[[int], None] = lambda _step: None

    # ---------------------------------------------------------------- actions

    def proof(self, member: Member) -> dict[str, Any]:
        """The member's proof of the profile, got the way the Personal Account's page
        gets it: VK ID authorization code + PKCE, an OK code, a Sign in with Apple
        identity token, each from the simulator's identity provider."""
        sim = f"http://127.0.0.1:{self.ports.simulator}"
        if member.network == "vk":
            return idc.vk_id_proof_sync(sim, member.user_id, DEMO_VK_ID_CLIENT)
        if member.network == "ok":
            return idc.ok_proof_sync(sim, member.user_id, DEMO_OK_CLIENT)
        return idc.apple_proof_sync(sim, member.social_user_id, DEMO_APPLE_CLIENT)

    def link(self, member: Member, registration: bool) -> None:
        """Registration signs in with the proof and ``register``; a link adds the
        proven profile to an existing member."""
        base = f"http://127.0.0.1:{self.ports.link}"
        proof = self.proof(member)
        if registration:
            response = self.http.post(
                f"{base}/v1/sign-in",
                json={"proof": proof, "register": True, "member_id": member.member_id},
                auth=self.pa or httpx.USE_CLIENT_DEFAULT,
            )
        else:
            response = self.http.post(
                f"{base}/v1/links",
                json={"member_id": member.member_id, "proof": proof},
                auth=self.pa or httpx.USE_CLIENT_DEFAULT,
            )
        if response.status_code not in (200, 201):
            raise StoryFailedError(f"link API refused {member.member_id}: {response.text}")
        how = "registered with" if registration else "linked"
        console.print(
            f"[bold]link API[/]: {member.member_id} {how} {member.network}:"
            f"{member.social_user_id} (proof verified by the provider)"
        )

    def change(self, change: Change) -> None:
        path = change.path
        for network in ("vk", "ok"):
            for index, post_id in enumerate(self.posts[network]):
                if f"/{network}/" in path:
                    path = path.replace(f"{{post:{index}}}", str(post_id))
        response = self.http.request(
            change.method, f"http://127.0.0.1:{self.ports.simulator}{path}", json=change.body
        )
        if response.status_code >= 300:
            raise StoryFailedError(f"simulator refused {change.method} {path}: {response.text}")
        if change.method == "POST" and path.endswith("/posts"):
            network = "vk" if "/vk/" in path else "ok"
            self.posts[network].append(int(response.json()["post_id"]))

    # --------------------------------------------------------------- checking

    def ledger(self) -> list[dict[str, Any]]:
        """Every ledger entry in the demo's database (the tests check each effect is once)."""
        if self.database_url is None:
            return []
        schema = ActionsSettings.model_fields["db_schema"].default
        with psycopg.connect(self.database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                "SELECT command_id, member_id, points, offer_id, source_event_id "
                f"FROM {schema}.entries ORDER BY seq"
            )
            return list(cur.fetchall())

    def balances(self, watcher: Watcher) -> dict[str, int]:
        with watcher.lock:
            return dict(watcher.seen.balances)

    def play(self, watcher: Watcher, number: int, step: Step) -> None:
        # The title on a line of its own: a rule cuts a long title to the terminal width.
        _rule(f"[bold]Step {number}[/]")
        console.print(f"[bold]{step.title}[/]")
        runs_before = watcher.run_counts()
        for link in step.links:
            self.link(link.member, link.registration)
        changed_at = datetime.now(UTC)
        for change in step.changes:
            self.change(change)
        self.after_changes(number)
        for network, group_id in step.collect:
            if not watcher.wait_for_run_started_after(
                network, group_id, changed_at, self.step_timeout_s
            ):
                raise StoryFailedError(
                    f"no complete collection of {network} group {group_id} within "
                    f"{self.step_timeout_s:.0f}s (see the collector's log)"
                )
        deadline = time.monotonic() + self.step_timeout_s
        while time.monotonic() < deadline:
            now = self.balances(watcher)
            if all(now.get(m, 0) == v for m, v in step.balances.items()):
                break
            time.sleep(0.3)
        now = self.balances(watcher)
        wrong = {m: (now.get(m, 0), v) for m, v in step.balances.items() if now.get(m, 0) != v}
        if wrong:
            detail = ", ".join(
                f"{m} has {got}, expected {want}" for m, (got, want) in wrong.items()
            )
            raise StoryFailedError(f"step {number}: {detail}")
        runs = watcher.run_counts()
        collected = ", ".join(
            f"{network} group {group_id}: {count - runs_before.get((network, group_id), 0)}"
            for (network, group_id), count in sorted(runs.items())
        )
        console.print(f"[dim]collector runs during the step: {collected or 'none'}[/]")
        console.print(
            "[bold green]balances[/]: " + ", ".join(f"{m} {v}" for m, v in sorted(now.items()))
        )


LEDGER_WAIT_S = 60.0
"""How long the summary waits for the ledger API: a service the chaos round killed last
may still be starting when the story ends."""


def _ledger_get(demo: Demo, path: str, *, wait_s: float) -> httpx.Response:
    """GET from the ledger API, waiting out connection refusals for ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return demo.http.get(
                f"http://127.0.0.1:{demo.ports.actions}{path}",
                auth=demo.operator or httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _summary_table(demo: Demo, watcher: Watcher) -> tuple[Table, dict[str, Any]]:
    messages: list[dict[str, Any]] = demo.http.get(
        f"http://127.0.0.1:{demo.ports.providers}/messages"
    ).json()
    delivered: dict[str, int] = {}
    for message in messages:
        to = str(message.get("to") or "?")
        delivered[to] = delivered.get(to, 0) + 1
    table = Table(title="Members after the story (balances from the ledger API)")
    for column in ("member", "profile", "balance", "expected", "messages"):
        table.add_column(column, overflow="fold")  # wrapped, never cut with "…"
    balances: dict[str, int] = {}
    for member in LINKED:
        answer = _ledger_get(demo, f"/v1/members/{member.member_id}/balance", wait_s=LEDGER_WAIT_S)
        balance = int(answer.json()["balance"]) if answer.status_code == 200 else 0
        balances[member.member_id] = balance
        expected = STORY[-1].balances[member.member_id]
        colour = "green" if balance == expected else "red"
        table.add_row(
            member.member_id,
            f"{member.network}:{member.social_user_id}",
            f"[{colour}]{balance}[/]",
            str(expected),
            str(delivered.get(member.member_id, 0)),
        )
    with watcher.lock:
        events = list(watcher.seen.events.values())
        summary = {
            "balances": balances,
            "events": [
                {"type": type(e).__name__, "event_id": e.event_id, **e.model_dump(mode="json")}
                for e in events
            ],
            "event_deliveries": watcher.seen.event_deliveries,
            "posts": demo.posts,
            "messages": messages,
            "outcome_messages": [m.model_dump(mode="json") for m in watcher.seen.messages],
        }
    summary["ledger"] = demo.ledger()
    return table, summary


def _finish_chaos(demo: Demo, watcher: Watcher, monkey: ChaosMonkey) -> None:
    """Let the monkey kill every service once, then check the balances held through it."""
    _rule("[bold]Chaos[/]: every service dies at least once; the balances must hold")
    if not monkey.finish_round():
        raise StoryFailedError(f"the chaos round did not complete: {monkey.log}")
    for name in monkey.victims:  # the last one killed may still be starting
        monkey.wait_ready(name)
    final = Step("after the chaos round", balances=dict(STORY[-1].balances))
    demo.play(watcher, len(STORY) + 1, final)


def _failover_drill(
    supervisor: Supervisor, kafka_settings: KafkaSettings, demo: Demo
) -> FailoverDrill:
    """The drill for ``--failover``: the last worker of every service that runs several,
    the rules workers' group and transactional ids; refused on fewer than three brokers."""
    admin = kafka.admin(kafka_settings, "demo-failover")
    brokers = len(admin.list_topics(timeout=30).brokers)
    workers: dict[str, list[str]] = {}
    for name in supervisor.specs:
        workers.setdefault(re.sub(r"-\d+$", "", name), []).append(name)
    victims = [names[-1] for names in workers.values() if len(names) > 1]
    if brokers < 3 or not victims:
        raise StoryFailedError(
            f"--failover needs a cluster of three brokers (this one has {brokers}: ./run stack "
            "start --brokers 3 on a fresh SL_STACK_DIR) and two workers of a service "
            "(--workers rules=2,detector=2,actions=2)"
        )
    rules = [spec.env for spec in supervisor.specs.values() if "RULES_INSTANCE_ID" in spec.env]
    drill = FailoverDrill(
        supervisor,
        admin,
        rules[0]["RULES_APP_ID"],
        [f"{env['RULES_APP_ID']}.{env['RULES_INSTANCE_ID']}" for env in rules],
        victims,
        bootstrap=kafka_settings.bootstrap_servers,
        on_event=console.print,
    )
    demo.after_changes = drill.after_changes
    return drill


def _finish_failover(demo: Demo, watcher: Watcher, drill: FailoverDrill) -> None:
    """Whatever of the drill the story's length left undone, then the balances again."""
    _rule("[bold]Failover[/]: every node and worker back; the balances must hold")
    drill.finish()
    final = Step("after the failover drill", balances=dict(STORY[-1].balances))
    demo.play(watcher, len(STORY) + 1, final)


def _report(
    demo: Demo,
    watcher: Watcher,
    summary: Path | None,
    monkey: ChaosMonkey | None,
    drill: FailoverDrill | None,
    *,
    ports: Ports,
) -> None:
    table, result = _summary_table(demo, watcher)
    console.print(table)
    console.print(
        f"{len(result['events'])} distinct events on the log, "
        f"{len(result['messages'])} messages delivered to the local providers"
    )
    if monkey is not None:
        result["chaos"] = {
            "kills": monkey.log.kills,
            "victims": monkey.victims,
            "broker_restarts": monkey.log.broker_restarts,
            "errors": monkey.log.errors,
        }
        console.print(f"chaos: {result['chaos']}")
    if drill is not None:
        result["failover"] = asdict(drill.log)
        console.print(f"failover: {result['failover']}")
    # what an operator's screens say now: every group OK with lag 0 within 30 s
    result["lag"] = lag.settle(f"http://127.0.0.1:{ports.lagmonitor}")
    console.print(lag.describe(result["lag"]))
    console.print(
        "The CLI reads the default namespace; `./run cli use demo` points it at this "
        "demo's topics and database (`./run cli use default` goes back)."
    )
    if summary is not None:
        summary.write_text(json.dumps(result, indent=2, default=str))


def _interrupt(*_: object) -> None:
    """SIGTERM stops the demo like Ctrl-C: wherever it waits, the services are stopped."""
    raise KeyboardInterrupt


def _prepare(
    kafka_settings: KafkaSettings, database_settings: DatabaseSettings, topics: TopicSettings
) -> dict[str, str]:
    """Fresh database, topics and groups, the demo offers loaded: the services' environment."""
    try:
        database_url = namespace.reset_database(database_settings)
        namespace.reset_kafka(kafka_settings, topics)
        console.print("namespace reset: fresh topics, consumer groups, database")
        env = {**os.environ, "DATABASE_URL": database_url, "TOPIC_PREFIX": namespace.PREFIX}
        _load_offers(env)
    except (namespace.SetupError, StoryFailedError) as exc:
        console.print(f"[red]demo: could not prepare its namespace: {exc}[/]")
        raise typer.Exit(1) from exc
    return env


def _credentials(database_url: str) -> dict[str, str]:
    """Fresh API credentials for the demo's callers, in the demo database's access
    schema (the services read the same ``ACCESS_DB_SCHEMA``)."""
    schema = AccessSettings().db_schema
    try:
        return {
            "pa": ensure_credential(
                database_url, schema, "demo-personal-account", ["links:write", "signin"]
            ),
            "operator": ensure_credential(database_url, schema, "demo-operator", ["ledger:read"]),
        }
    except (DatabaseUnavailableError, CredentialError) as exc:
        console.print(f"[red]demo: could not create its API credentials: {exc}[/]")
        raise typer.Exit(1) from exc


def _check_stack(kafka_settings: KafkaSettings, database_settings: DatabaseSettings) -> None:
    try:
        kafka.check_reachable(kafka_settings)
        with connect(database_settings) as conn:
            conn.execute("SELECT 1")
    except (kafka.KafkaUnavailableError, DatabaseUnavailableError) as exc:
        console.print(f"[red]demo: {exc}[/]\nStart the stack with ./run stack start.")
        raise typer.Exit(1) from exc


def _start(supervisor: Supervisor, logs: Path) -> None:
    with console.status("starting services..."):
        for name in supervisor.specs:
            supervisor.start(name)
            console.print(f"started [bold]{name}[/] (log {logs / name}.log)")


def _play(demo: Demo, watcher: Watcher) -> None:
    started = datetime.now(UTC)
    _rule("[bold]Baseline[/]: the first complete collection of each group earns nothing")
    for network, group_id in (("vk", VK_GROUP), ("ok", OK_GROUP)):
        if not watcher.wait_for_run_after(network, group_id, started, demo.step_timeout_s * 2):
            raise StoryFailedError(f"no baseline collection of {network} group {group_id}")
    for number, step in enumerate(STORY, start=1):
        demo.play(watcher, number, step)


def run(  # noqa: PLR0915, PLR0917  (typer options; the run in one place)
    exit_when_done: Annotated[
        bool,
        typer.Option(
            help="Stop the services and exit after the story (tests use this); without it "
            "they keep running until Ctrl-C.",
            show_default=False,
        ),
    ] = False,
    step_timeout: Annotated[
        float, typer.Option(help="Seconds each story step may take to show its effects.")
    ] = 120.0,
    summary: Annotated[
        Path | None, typer.Option(help="Write balances, events and messages as JSON here.")
    ] = None,
    record_metrics: Annotated[
        Path | None,
        typer.Option(
            help="After the story, scrape every service's /metrics a few times into this "
            "file (JSON lines: service, at, text); the e2e test evaluates the Grafana "
            "panels on it."
        ),
    ] = None,
    chaos_seed: Annotated[
        int | None,
        typer.Option(
            help="Chaos mode: kill -9 random services during the story (restarting them) and "
            "restart the local Kafka broker once; the balances must still come out exact."
        ),
    ] = None,
    chaos_broker_restart: Annotated[
        bool,
        typer.Option(
            help="In chaos mode, also restart the local broker once (the default; local "
            "stack only).",
            show_default=False,
        ),
    ] = True,
    workers: Annotated[str | None, typer.Option(help=WORKERS_HELP, metavar="SERVICE=N,...")] = None,
    failover: Annotated[
        bool,
        typer.Option(
            help="Failover drill, on a local cluster of three brokers (./run stack start "
            "--brokers 3) with --workers: mid-story SIGKILL the broker coordinating the rules "
            "workers' group and transactions, then one worker of each service that runs "
            "several (held down while the others take over), and bring them all back; the "
            "balances, events and messages must come out exactly as undisturbed.",
            show_default=False,
        ),
    ] = False,
) -> None:
    """Run the demo: a simulated VK and OK group, activity through every service, points."""
    kafka_settings, database_settings = KafkaSettings(), DatabaseSettings()
    _check_stack(kafka_settings, database_settings)
    ports = Ports.from_env()
    _rule("[bold]social-loyalty demo")
    console.print(f"Kafka {kafka_settings.bootstrap_servers}; topics prefixed '{namespace.PREFIX}'")
    state_dir = namespace.reset_state_dir(STATE_DIR)
    topics = TopicSettings(prefix=namespace.PREFIX)
    env = _prepare(kafka_settings, database_settings, topics)
    # Each service logs in as its own principal, allowed only its part of the flow.
    logins = kafka_access.system_logins(kafka_settings, namespace.PREFIX)

    specs = service_specs(
        prefix=namespace.PREFIX,
        state_dir=state_dir,
        groups_file=groups_at(DEMO_DIR / "groups.yaml", ports, state_dir),
        ports=ports,
        kafka_logins=logins,
        workers=workers_option(workers),
    )
    logs = state_dir / "logs"
    supervisor = Supervisor(specs, logs, env=env)
    watcher = Watcher(kafka_settings, topics, f"{namespace.PREFIX}watcher", on_line=console.print)
    signal.signal(signal.SIGTERM, _interrupt)
    demo = Demo(ports, step_timeout, _credentials(env["DATABASE_URL"]), env["DATABASE_URL"])
    monkey: ChaosMonkey | None = None
    drill: FailoverDrill | None = None
    failed = False
    try:
        _start(supervisor, logs)
        supervisor.watch()  # a service that dies (a broker restart, a crash) comes back
        watcher.start()
        console.print(
            f"dashboard: http://127.0.0.1:{ports.lagmonitor}/   ledger API: "
            f"http://127.0.0.1:{ports.actions}/docs (signed requests: docs/security.md)"
        )
        if chaos_seed is not None:
            monkey = ChaosMonkey(
                supervisor,
                [name for name in supervisor.specs if name not in ("simulator", "sinks")],
                seed=chaos_seed,
                restart_broker_after_kills=3 if chaos_broker_restart else None,
                on_event=console.print,
            )
            monkey.start()
        if failover:
            drill = _failover_drill(supervisor, kafka_settings, demo)
        _play(demo, watcher)
        if monkey is not None:
            _finish_chaos(demo, watcher, monkey)
        if drill is not None:
            _finish_failover(demo, watcher, drill)
        watcher.mute()  # after the story, only the summary and the dashboard hint
        _report(demo, watcher, summary, monkey, drill, ports=ports)
        if record_metrics is not None:
            _record_metrics(ports, record_metrics)
        if not exit_when_done:
            _keep_running(ports)
    except KeyboardInterrupt:
        console.print("\nstopping...")
    except (StoryFailedError, ServiceFailedError) as exc:
        failed = True
        console.print(f"[red]demo failed: {exc}[/]\nservice logs: {logs}")
        console.print(f"post-mortem: {_post_mortem(supervisor, ports, watcher, logs, exc)}")
    finally:
        if monkey is not None:
            monkey.stop()
        if drill is not None:
            drill.stop()
        watcher.stop()
        supervisor.stop_all()
        console.print("all services stopped")
    if failed:
        raise typer.Exit(1)


METRICS_ROUNDS = 4
METRICS_PAUSE_S = 5.0


def _record_metrics(ports: Ports, out: Path) -> None:
    """Every scraped service's ``/metrics`` (names as in deploy/prometheus/prometheus.yml),
    ``METRICS_ROUNDS`` times ``METRICS_PAUSE_S`` apart, as JSON lines."""
    targets = {
        "lagmonitor": ports.lagmonitor,
        "collector": ports.collector,
        "link": ports.link,
        "readmodel": ports.readmodel,
        "rules-api": ports.rules_api,
        "actions": ports.actions,
        "detector": ports.detector,
        "rules": ports.rules,
    }
    with out.open("w") as lines:
        for n in range(METRICS_ROUNDS):
            if n:
                time.sleep(METRICS_PAUSE_S)
            for service, port in targets.items():
                page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
                page.raise_for_status()
                record = {"service": service, "at": time.time(), "text": page.text}
                lines.write(json.dumps(record) + "\n")


def _post_mortem(
    supervisor: Supervisor, ports: Ports, watcher: Watcher, logs: Path, error: Exception
) -> Path:
    """Write what the running system says at the moment a step failed, before the
    services stop and the next run resets the namespace: every service's readiness,
    the lag monitor's per-partition view of every group, the detector's and rules'
    metrics, and the watcher's timeline (when each event, credit and run was seen)."""
    out = logs / "post-mortem.json"

    def fetch(url: str) -> Any:
        try:
            response = httpx.get(url, timeout=5)
        except httpx.HTTPError as exc:
            return {"unreachable": str(exc)}
        try:
            return {"status": response.status_code, "body": response.json()}
        except ValueError:
            return {"status": response.status_code, "text": response.text}

    with watcher.lock:
        timeline = [(at.isoformat(), line) for at, line in watcher.seen.timeline]
    report = {
        "failed_at": datetime.now(UTC).isoformat(),
        "error": str(error),
        "ready": {
            name: fetch(spec.ready_url)
            for name, spec in supervisor.specs.items()
            if spec.ready_url is not None
        },
        "lag": fetch(f"http://127.0.0.1:{ports.lagmonitor}/api/lag"),
        "metrics": {
            name: fetch(f"http://127.0.0.1:{port}/metrics").get("text", "")
            for name, port in (("detector", ports.detector), ("rules", ports.rules))
        },
        "timeline": timeline,
    }
    out.write_text(json.dumps(report, indent=1, default=str))
    return out


def _keep_running(ports: Ports) -> None:
    console.print(
        f"[bold]Done.[/] The services keep running: dashboard "
        f"http://127.0.0.1:{ports.lagmonitor}/ . Press Ctrl-C to stop."
    )
    while True:  # until Ctrl-C or SIGTERM (both raise KeyboardInterrupt); watch() revives
        time.sleep(1.0)


def _load_offers(env: dict[str, str]) -> None:
    try:
        for offer in namespace.load_offers(env, DEMO_DIR / "offers"):
            console.print(f"offer loaded and active: {offer.id} ({offer.name})")
    except namespace.SetupError as exc:
        raise StoryFailedError(str(exc)) from exc


PROG_NAME = "./run demo"
"""What the usage line names: ``./run demo ARGS`` runs ``python -m services.demo ARGS``."""


def cli() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.command()(run)
    return app


def main() -> None:
    cli()(prog_name=PROG_NAME)


if __name__ == "__main__":
    main()

"""The local stack: a real Apache Kafka broker and a real PostgreSQL, no Docker.

Kafka is assembled from Maven Central jars (``deploy/kafka/pom.xml``) and run with
Java 17 as one KRaft node, or (``start --brokers 3``) as a cluster of three combined
nodes, each broker and controller, with three replicas of every topic. PostgreSQL is
the one in ``DATABASE_URL`` if that is set, otherwise a private cluster made from the
OS packages (installed with apt-get when missing) with its data under ``deploy/.local/``.

Every command is safe to run twice. ``start`` returns only when the broker has
accepted a transactional produce and PostgreSQL has accepted a connection, and
writes ``deploy/.local/stack.env`` for the other commands to source.

Kafka is locked down: its one client listener is SASL/SCRAM-SHA-512 on loopback,
ACLs are on (KRaft ``StandardAuthorizer``, nothing allowed without an ACL) and the
super user ``admin`` has a random password made for this stack directory, kept in
``kafka/credentials.json`` (mode 600) and written into ``stack.env``. The services
get principals of their own from ``social-loyalty kafka-access apply``.

    python deploy/localstack.py start [--brokers N] [--proxy]|stop|status|env|kafka-tool ...
    python deploy/localstack.py kill-broker N|start-broker N   (failover tests)
    python3 deploy/localstack.py fetch-kafka   (the jars only; needs no package of .venv)

Faults for the tests (on this stack only: each refuses a stack whose Kafka or PostgreSQL
is external, or environment variables that name another one):

    stop-postgres [--mode smart|fast|immediate] | start-postgres | restart-postgres
    pause-broker [--node N] | resume-broker [--node N]     (SIGSTOP / SIGCONT the JVM)
    kill-broker [--node N] | start-broker [--node N]       (SIGKILL / start and wait)

``start --proxy`` (one node) also runs Toxiproxy (``deploy/toxiproxy.py``) with a proxy
in front of a second broker listener, which advertises the proxy's address, and one in
front of PostgreSQL. Each command is also a Python function of this module taking the
stack directory (``stop_postgres_cluster(stack_dir)``, ``pause_broker(stack_dir)``,
``proxy_endpoints(stack_dir)``, ...), run on that stack whatever the caller's environment.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

try:
    from deploy import toxiproxy
except ModuleNotFoundError:  # run as a script (python deploy/localstack.py): deploy/ is on the path
    import toxiproxy  # type: ignore[import-not-found,no-redef]

DEPLOY = Path(__file__).resolve().parent
LOCAL = Path(os.environ.get("SL_STACK_DIR", DEPLOY / ".local"))
KAFKA_DIR = LOCAL / "kafka"
PG_DIR = LOCAL / "postgres"
LOG_DIR = LOCAL / "logs"
ENV_FILE = LOCAL / "stack.env"
CREDENTIALS_FILE = KAFKA_DIR / "credentials.json"
ADMIN_CLIENT_PROPERTIES = KAFKA_DIR / "admin-client.properties"
ADMIN_USER = "admin"
SASL_PROTOCOL = "SASL_PLAINTEXT"
SASL_MECHANISM = "SCRAM-SHA-512"
PG_OS_USER = "sl-postgres"
PG_DATABASE = "social_loyalty"
BIN_DIR = LOCAL / "bin"  # tools built for this stack (Toxiproxy)
TOXIPROXY_DIR = LOCAL / "toxiproxy"
TOXIPROXY_PID = TOXIPROXY_DIR / "toxiproxy.pid"


def layout_file(stack_dir: Path) -> Path:
    """Brokers, ports, proxy ports and jars the stack's Kafka was last started with."""
    return stack_dir / "kafka" / "layout.json"


def postgres_port_file(stack_dir: Path) -> Path:
    """The port the stack's private PostgreSQL was last started on."""
    return stack_dir / "postgres" / "port"


def recorded_layout(stack_dir: Path) -> dict[str, object]:
    path = layout_file(stack_dir)
    layout: dict[str, object] = json.loads(path.read_text()) if path.exists() else {}
    return layout


LAYOUT_FILE = layout_file(LOCAL)
# The Maven-built distribution; SL_KAFKA_LIBS lets a second stack (the tests' three-broker
# cluster, a test's private stack) share the first one's jars instead of copying them
# again, and the layout keeps it for the commands that start that stack's broker later.
KAFKA_LIBS = Path(
    os.environ.get("SL_KAFKA_LIBS")
    or str(recorded_layout(LOCAL).get("kafka_libs") or "")
    or LOCAL / "kafka-libs"
)


@dataclass(frozen=True)
class Ports:
    kafka: int
    controller: int
    postgres: int

    @classmethod
    def from_env(cls) -> Ports:
        """The ports the environment names; for Kafka, unset, those this stack directory's
        cluster was started with (so ``kill-broker`` and ``status`` find its nodes), else
        the defaults."""
        layout = json.loads(LAYOUT_FILE.read_text()) if LAYOUT_FILE.exists() else {}
        pg_port_file = postgres_port_file(LOCAL)
        recorded_pg = pg_port_file.read_text().strip() if pg_port_file.exists() else ""
        return cls(
            kafka=int(os.environ.get("SL_KAFKA_PORT") or layout.get("kafka_port", 19092)),
            controller=int(
                os.environ.get("SL_KAFKA_CONTROLLER_PORT") or layout.get("controller_port", 19093)
            ),
            postgres=int(os.environ.get("SL_POSTGRES_PORT") or recorded_pg or "55432"),
        )


PROXY_PORT_VARIABLES = {
    "api": "SL_TOXIPROXY_PORT",
    "kafka": "SL_KAFKA_PROXY_PORT",
    "kafka_listener": "SL_KAFKA_PROXIED_LISTENER_PORT",
    "postgres": "SL_POSTGRES_PROXY_PORT",
}


@dataclass(frozen=True)
class ProxyPorts:
    """Where the network-fault proxy of a ``start --proxy`` stack listens. By default
    the ten ports above the Kafka port are left to the nodes (up to five, two ports
    each), and the proxy takes the next four; each has a variable of its own."""

    api: int
    """Toxiproxy's HTTP API (SL_TOXIPROXY_PORT; default Kafka port + 10)."""
    kafka: int
    """Toxiproxy's listen port in front of the broker, the address the PROXIED listener
    advertises: clients bootstrap here (SL_KAFKA_PROXY_PORT; + 11)."""
    kafka_listener: int
    """The broker's PROXIED listener, the Kafka proxy's upstream
    (SL_KAFKA_PROXIED_LISTENER_PORT; + 12)."""
    postgres: int
    """Toxiproxy's listen port in front of PostgreSQL (SL_POSTGRES_PROXY_PORT; + 13)."""

    @classmethod
    def resolve(cls, ports: Ports, wanted: bool | None) -> ProxyPorts | None:
        """The proxy this stack runs: ``--proxy`` (or SL_KAFKA_PROXY_PORT) turns it on,
        ``--no-proxy`` off, and otherwise it stays as the stack was last started."""
        recorded = recorded_layout(LOCAL).get("proxy")
        previous: dict[str, int] = recorded if isinstance(recorded, dict) else {}
        if wanted is False:
            return None
        if not (wanted or previous or os.environ.get("SL_KAFKA_PROXY_PORT")):
            return None
        base = ports.kafka + 10
        defaults = {
            "api": base,
            "kafka": base + 1,
            "kafka_listener": base + 2,
            "postgres": base + 3,
        }
        return cls(
            **{
                key: int(os.environ.get(variable) or previous.get(key) or defaults[key])
                for key, variable in PROXY_PORT_VARIABLES.items()
            }
        )

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka}"

    @property
    def toxiproxy_url(self) -> str:
        return f"http://127.0.0.1:{self.api}"


MAX_BROKERS = 5


@dataclass(frozen=True)
class Node:
    """One KRaft node (broker and controller in one process). Node 1 keeps the paths a
    one-broker stack has always had; node n of a larger cluster lives in ``kafka/node-n``,
    listens on the stack's ports plus ``2 * (n - 1)`` and logs to ``logs/kafka-n``."""

    id: int
    port: int
    controller_port: int

    @property
    def name(self) -> str:
        return "kafka" if self.id == 1 else f"kafka-{self.id}"

    @property
    def dir(self) -> Path:
        return KAFKA_DIR if self.id == 1 else KAFKA_DIR / f"node-{self.id}"

    @property
    def pid_file(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def log_dir(self) -> Path:
        return LOG_DIR if self.id == 1 else LOG_DIR / self.name

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Cluster:
    """The local Kafka cluster: ``brokers`` combined nodes on loopback."""

    ports: Ports
    brokers: int
    proxy: ProxyPorts | None = None
    """Node 1's PROXIED listener and Toxiproxy's ports, on a ``start --proxy`` stack."""

    @property
    def nodes(self) -> list[Node]:
        return [
            Node(n, self.ports.kafka + 2 * (n - 1), self.ports.controller + 2 * (n - 1))
            for n in range(1, self.brokers + 1)
        ]

    def node(self, node_id: int) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise StackError(f"no Kafka node {node_id}: this stack has nodes 1..{self.brokers}")

    @property
    def bootstrap(self) -> str:
        """Every node: a client that starts while one node is down still finds the others."""
        return ",".join(node.address for node in self.nodes)

    @property
    def replication(self) -> int:
        return min(3, self.brokers)

    @property
    def min_insync(self) -> int:
        return 2 if self.brokers >= 3 else 1

    @property
    def quorum_voters(self) -> str:
        return ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in self.nodes)


def cluster_size(requested: int | None) -> int:
    """How many nodes this stack directory runs: what its storage was formatted with, or
    (on a fresh directory) ``--brokers`` / ``SL_KAFKA_BROKERS`` / 1. Asking a formatted
    stack for another size is an error: KRaft's voter set is fixed at format time here."""
    env = os.environ.get("SL_KAFKA_BROKERS")
    wanted = requested if requested is not None else int(env) if env else None
    if wanted is not None and not 1 <= wanted <= MAX_BROKERS:
        raise StackError(f"--brokers must be between 1 and {MAX_BROKERS}, not {wanted}")
    layout = json.loads(LAYOUT_FILE.read_text()) if LAYOUT_FILE.exists() else {}
    formatted: int | None = layout.get("brokers")
    if formatted is None and (KAFKA_DIR / "data" / "meta.properties").exists():
        formatted = 1  # formatted before the stack knew more than one broker
    if formatted is not None and wanted is not None and wanted != formatted:
        raise StackError(
            f"the Kafka storage in {KAFKA_DIR} was formatted for {formatted} broker(s), not "
            f"{wanted}: stop the stack and remove {KAFKA_DIR} (its topics and groups go), "
            "or use another SL_STACK_DIR"
        )
    return formatted or wanted or 1


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


class StackError(RuntimeError):
    """A step of the stack could not be done; the message says what to do."""


# --------------------------------------------------------------------- processes


def read_pid(pid_file: Path) -> int | None:
    """The pid in the file if that process is alive, else None."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # A zombie (killed but not reaped by a parent that is still ours) is not alive.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists() and stat.read_text().split(") ", 1)[-1].startswith("Z"):
        return None
    return pid


def is_paused(pid: int) -> bool:
    """Stopped by a signal (SIGSTOP): alive, holding its ports, answering nothing."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[-1][:1]
    except OSError:
        return False
    return state in ("T", "t")


def terminate(pid: int) -> None:
    """SIGTERM, and SIGCONT after it: a paused process would otherwise keep the SIGTERM
    pending until it is killed."""
    with contextlib.suppress(ProcessLookupError):  # it may be on its way out already
        os.kill(pid, signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)


def stop_pid(pid_file: Path, name: str, timeout: float = 30.0) -> None:
    pid = read_pid(pid_file)
    if pid is None:
        say(f"{name}: not running")
        pid_file.unlink(missing_ok=True)
        return
    terminate(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read_pid(pid_file) is not None:
        time.sleep(0.2)
    if read_pid(pid_file) is not None:
        say(f"{name}: did not stop in {timeout:.0f}s, killing pid {pid}")
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    say(f"{name}: stopped")


# ------------------------------------------------------------------------- Kafka


def ensure_kafka_jars() -> None:
    marker = KAFKA_LIBS / ".complete"
    if marker.exists():
        return
    if shutil.which("java") is None or shutil.which("mvn") is None:
        raise StackError(
            "Kafka needs Java 17 and Maven on PATH (apt-get install openjdk-17-jdk-headless maven)"
        )
    say("fetching Apache Kafka jars from Maven Central (first run only)...")
    KAFKA_LIBS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        maven(
            "-f",
            str(DEPLOY / "kafka" / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={KAFKA_LIBS}",
        ),
        check=True,
        env=maven_env(),
    )
    marker.touch()


def maven(*args: str) -> list[str]:
    """A quiet Maven command for a log file: batch mode (no progress, no prompt), no colour."""
    return ["mvn", "-q", "-B", "-Dstyle.color=never", *args]


def maven_env() -> dict[str, str]:
    """Maven's environment for a log file: Debian's Maven 3.8 writes jansi's reset code
    (``ESC[0m``) before its first line even in batch mode with ``-Dstyle.color=never``;
    only the JVM property ``jansi.noreset`` (read before Maven parses its arguments, so
    in ``MAVEN_OPTS``) stops it."""
    opts = os.environ.get("MAVEN_OPTS", "")
    if "jansi.noreset" not in opts:
        opts = f"{opts} -Djansi.noreset=true".strip()
    return {**os.environ, "MAVEN_OPTS": opts}


def java_command(
    main_class: str, *args: str, heap: str = "256m", log_dir: Path = LOG_DIR
) -> list[str]:
    return [
        "java",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={DEPLOY / 'kafka' / 'log4j2.yaml'}",
        f"-Dkafka.logs.dir={log_dir}",
        "-cp",
        f"{KAFKA_LIBS}/*",
        main_class,
        *args,
    ]


@dataclass(frozen=True)
class Credentials:
    """The stack's two broker passwords: ``admin`` (SCRAM, the super user every tool and
    ``kafka-access apply`` use) and ``controller`` (PLAIN, the broker to its controller)."""

    admin: str
    controller: str

    def client_config(self, bootstrap: str) -> dict[str, str | int]:
        """librdkafka settings of an admin client of this stack."""
        return {
            "bootstrap.servers": bootstrap,
            "security.protocol": SASL_PROTOCOL,
            "sasl.mechanism": SASL_MECHANISM,
            "sasl.username": ADMIN_USER,
            "sasl.password": self.admin,
        }


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a password), mode 600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)  # an older file keeps its mode through O_TRUNC


def kafka_credentials() -> Credentials:
    """This stack directory's passwords, made (random) the first time."""
    if CREDENTIALS_FILE.exists():
        data = json.loads(CREDENTIALS_FILE.read_text())
        return Credentials(admin=data["admin"], controller=data["controller"])
    # Hex: nothing a JAAS line, a properties file or --add-scram would have to quote.
    creds = Credentials(admin=secrets.token_hex(24), controller=secrets.token_hex(24))
    write_private(
        CREDENTIALS_FILE, json.dumps({"admin": creds.admin, "controller": creds.controller})
    )
    return creds


def formatted_without_scram() -> bool:
    """Storage formatted before the stack had SASL: no admin SCRAM user in its metadata
    (the credentials file is made right before a SCRAM format, never after)."""
    return (KAFKA_DIR / "data" / "meta.properties").exists() and not CREDENTIALS_FILE.exists()


def upgrade_pre_sasl_storage() -> None:
    """A stack directory from before SASL cannot serve the SASL listener (its metadata
    has no SCRAM user to log in with): stop its broker and drop its storage, loudly."""
    if not formatted_without_scram():
        return
    say(
        f"kafka: the storage in {KAFKA_DIR / 'data'} was formatted before the stack had "
        "SASL/SCRAM and ACLs (no admin SCRAM user); recreating it. Its topics, offsets and "
        "consumer groups are dropped (the demo, `./run up` and `social-loyalty topics ensure` "
        "make the topics again)"
    )
    pid_file = KAFKA_DIR / "kafka.pid"  # node 1: the only node a pre-SASL stack had
    if read_pid(pid_file) is not None:
        stop_pid(pid_file, "kafka (pre-SASL)")
    shutil.rmtree(KAFKA_DIR / "data")


def kafka_properties(cluster: Cluster, node: Node, creds: Credentials) -> Path:
    template = (DEPLOY / "kafka" / "server.properties.template").read_text()
    listeners = [f"CLIENT://127.0.0.1:{node.port}"]
    advertised = [f"CLIENT://127.0.0.1:{node.port}"]
    protocols = ["CLIENT:SASL_PLAINTEXT"]
    proxied_sasl = ""
    if cluster.proxy is not None and node.id == 1:
        listeners.append(f"PROXIED://127.0.0.1:{cluster.proxy.kafka_listener}")
        advertised.append(f"PROXIED://{cluster.proxy.kafka_bootstrap}")
        protocols.append("PROXIED:SASL_PLAINTEXT")
        proxied_sasl = (
            f"listener.name.proxied.sasl.enabled.mechanisms={SASL_MECHANISM}\n"
            "listener.name.proxied.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
        )
    listeners.append(f"CONTROLLER://127.0.0.1:{node.controller_port}")
    protocols.append("CONTROLLER:SASL_PLAINTEXT")
    text = template.format(
        node_id=node.id,
        quorum_voters=cluster.quorum_voters,
        listeners=",".join(listeners),
        advertised_listeners=",".join(advertised),
        protocol_map=",".join(protocols),
        proxied_listener_sasl=proxied_sasl,
        data_dir=node.dir / "data",
        replication=cluster.replication,
        min_insync=cluster.min_insync,
        admin_password=creds.admin,
        controller_password=creds.controller,
    )
    props = node.dir / "server.properties"
    write_private(props, text)
    # For Kafka's own tools (kafka-tool): the admin login, passed as --command-config.
    write_private(
        ADMIN_CLIENT_PROPERTIES,
        f"security.protocol={SASL_PROTOCOL}\nsasl.mechanism={SASL_MECHANISM}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN_USER}" password="{creds.admin}";\n',
    )
    return props


def format_kafka_storage(node: Node, props: Path, creds: Credentials) -> None:
    if (node.dir / "data" / "meta.properties").exists():
        return
    # One cluster id for every node: they format the same cluster.
    cluster_id_file = KAFKA_DIR / "cluster.id"
    if not cluster_id_file.exists():
        # A KRaft cluster id is a base64url UUID without padding, 22 characters.
        raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cluster_id_file.write_text(raw)
    say(f"{node.name}: formatting storage (KRaft)")
    subprocess.run(
        java_command(
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            # One argument with "=": a base64url id may start with "-" (1 in 64), which
            # argparse would take for an option ("expected one argument").
            f"--cluster-id={cluster_id_file.read_text().strip()}",
            # The super user's SCRAM credential goes into the first metadata records: the
            # broker's own inter-broker login and the stack's tools need it from the start.
            f"--add-scram={SASL_MECHANISM}=[name={ADMIN_USER},password={creds.admin}]",
            "-c",
            str(props),
        ),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def start_node(cluster: Cluster, node: Node, creds: Credentials) -> None:
    """Start one node unless it runs; returns at once (``wait_for_kafka`` waits)."""
    pid = read_pid(node.pid_file)
    if pid is not None:
        if is_paused(pid):
            raise StackError(
                f"{node.name}: pid {pid} is paused (SIGSTOP); `resume-broker --node {node.id}` "
                "continues it"
            )
        say(f"{node.name}: already running (pid {pid})")
        return
    node.dir.mkdir(parents=True, exist_ok=True)
    node.log_dir.mkdir(parents=True, exist_ok=True)
    props = kafka_properties(cluster, node, creds)
    format_kafka_storage(node, props, creds)
    default_heap = "768m" if cluster.brokers == 1 else "512m"
    heap = os.environ.get("SL_KAFKA_HEAP", default_heap)
    with (node.log_dir / "kafka.stdout").open("ab") as out:
        proc = subprocess.Popen(
            java_command("kafka.Kafka", str(props), heap=heap, log_dir=node.log_dir),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    node.pid_file.write_text(str(proc.pid))
    say(f"{node.name}: started pid {proc.pid} on {node.address}, log {node.log_dir / 'kafka.log'}")


def start_kafka(cluster: Cluster) -> Credentials:
    """Start every node that is not running and wait until the cluster takes transactions."""
    upgrade_pre_sasl_storage()
    creds = kafka_credentials()
    ensure_kafka_jars()
    KAFKA_DIR.mkdir(parents=True, exist_ok=True)
    layout: dict[str, object] = {
        "brokers": cluster.brokers,
        "kafka_port": cluster.ports.kafka,
        "controller_port": cluster.ports.controller,
        "proxy": asdict(cluster.proxy) if cluster.proxy is not None else None,
    }
    if KAFKA_LIBS != LOCAL / "kafka-libs":
        layout["kafka_libs"] = str(KAFKA_LIBS)
    LAYOUT_FILE.write_text(json.dumps(layout))
    first = cluster.nodes[0]
    props = first.dir / "server.properties"
    if read_pid(first.pid_file) is not None and props.exists():
        has_listener = "PROXIED://" in props.read_text()
        if has_listener != (cluster.proxy is not None):
            say(
                f"{first.name}: restarting to "
                f"{'add' if cluster.proxy is not None else 'drop'} the proxied listener"
            )
            stop_pid(first.pid_file, first.name)
    for node in cluster.nodes:
        start_node(cluster, node, creds)
    wait_for_kafka(
        creds.client_config(cluster.bootstrap),
        [node.pid_file for node in cluster.nodes],
        brokers=cluster.brokers,
    )
    return creds


def external_client_config(bootstrap: str) -> dict[str, str | int]:
    """An external cluster's client settings from the same KAFKA_* variables the services
    read (security protocol, SASL, TLS files)."""
    config: dict[str, str | int] = {"bootstrap.servers": bootstrap}
    for key, variable in (
        ("security.protocol", "KAFKA_SECURITY_PROTOCOL"),
        ("sasl.mechanism", "KAFKA_SASL_MECHANISM"),
        ("sasl.username", "KAFKA_SASL_USERNAME"),
        ("sasl.password", "KAFKA_SASL_PASSWORD"),
        ("ssl.ca.location", "KAFKA_SSL_CA_LOCATION"),
        ("ssl.certificate.location", "KAFKA_SSL_CERTIFICATE_LOCATION"),
        ("ssl.key.location", "KAFKA_SSL_KEY_LOCATION"),
        ("ssl.key.password", "KAFKA_SSL_KEY_PASSWORD"),
    ):
        if os.environ.get(variable):
            config[key] = os.environ[variable]
    return config


def wait_for_kafka(
    client: dict[str, str | int],
    pid_files: list[Path],
    timeout: float = 120.0,
    brokers: int = 1,
) -> None:
    """Return when every one of ``brokers`` brokers is registered and the cluster commits
    a transactional produce; that proves the transaction coordinator and its internal
    topic are up, not just the port (and, on the SASL stack, that the admin login and the
    authorizer work). ``pid_files``: the local nodes, which must stay alive meanwhile."""
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    bootstrap = client["bootstrap.servers"]
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        dead = [pid_file for pid_file in pid_files if read_pid(pid_file) is None]
        if dead:
            logs = ", ".join(str(pid_file.parent) for pid_file in dead)
            raise StackError(f"kafka exited during start; see kafka.log of {logs} in {LOG_DIR}")
        try:
            # log_level 0: a broker that is still starting refuses connections,
            # which is expected here and not worth a screen of librdkafka errors.
            quiet: dict[str, str | int] = {**client, "log_level": 0}
            admin = AdminClient({**quiet, "socket.timeout.ms": 3000})
            metadata = admin.list_topics(timeout=3)
            if len(metadata.brokers) < brokers:
                last_error = f"{len(metadata.brokers)} of {brokers} brokers registered"
                time.sleep(1.0)
                continue
            topic = "_stack.healthcheck"
            if topic not in metadata.topics:
                replicas = min(3, brokers)
                for future in admin.create_topics([NewTopic(topic, 1, replicas)]).values():
                    try:
                        future.result(10)
                    except KafkaException as exc:
                        if "TOPIC_ALREADY_EXISTS" not in str(exc):
                            raise
            producer = Producer(
                {
                    **quiet,
                    "transactional.id": "stack-healthcheck",
                    "transaction.timeout.ms": 10000,
                }
            )
            producer.init_transactions(15)
            producer.begin_transaction()
            producer.produce(topic, b"ok")
            producer.commit_transaction(15)
            say(f"kafka: ready at {bootstrap} (transactional produce committed)")
            return
        except KafkaException as exc:
            last_error = str(exc)
        time.sleep(1.0)
    raise StackError(f"kafka at {bootstrap} not ready after {timeout:.0f}s: {last_error}")


# --------------------------------------------------------------------- PostgreSQL


def pg_bin() -> Path:
    """The newest installed PostgreSQL server binaries, installing them if absent."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        if os.geteuid() != 0:
            raise StackError("PostgreSQL is not installed; run: sudo apt-get install -y postgresql")
        say("installing PostgreSQL from the OS packages (first run only)...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not found:
            raise StackError("apt-get installed postgresql but no pg_ctl was found")
    return found[-1].parent


def as_pg_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; as root we run it as a system user."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", PG_OS_USER, "--", *argv]


def ensure_pg_user() -> None:
    if os.geteuid() != 0:
        return
    exists = subprocess.run(["id", "-u", PG_OS_USER], capture_output=True).returncode == 0
    if not exists:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_OS_USER],
            check=True,
        )


def chown_to_pg(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user=PG_OS_USER, group=None)


def start_postgres(ports: Ports) -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        wait_for_postgres(url)
        say("postgres: using DATABASE_URL")
        return url
    return start_private_postgres(ports)


def private_postgres_url(port: int, database: str = PG_DATABASE) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{database}"


def pg_server_options(port: int) -> str:
    socket_dir = PG_DIR / "socket"
    return (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {socket_dir} "
        "-c max_connections=200 -c fsync=on"
    )


def pg_running(bin_dir: Path) -> bool:
    status = subprocess.run(
        as_pg_user([str(bin_dir / "pg_ctl"), "-D", str(PG_DIR / "data"), "status"]),
        capture_output=True,
    )
    return status.returncode == 0


def start_private_postgres(ports: Ports) -> str:
    """The stack's own cluster (made on the first start) running on ``ports.postgres``
    with the project's database; returns once it accepts connections."""
    bin_dir = pg_bin()
    ensure_pg_user()
    data = PG_DIR / "data"
    socket_dir = PG_DIR / "socket"
    for folder in (PG_DIR, socket_dir, LOG_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    chown_to_pg(PG_DIR)
    chown_to_pg(socket_dir)
    log_file = LOG_DIR / "postgres.log"
    log_file.touch()
    chown_to_pg(log_file)
    # Every directory above the data dir must be traversable by the pg user.
    for parent in [LOCAL, *LOCAL.parents]:
        if parent == Path("/"):
            break
        mode = parent.stat().st_mode
        if os.geteuid() == 0 and not mode & 0o001:
            parent.chmod(mode | 0o001)
    if not (data / "PG_VERSION").exists():
        say("postgres: creating a private cluster")
        subprocess.run(
            as_pg_user(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    url = private_postgres_url(ports.postgres)
    if pg_running(bin_dir):
        say("postgres: already running")
    else:
        subprocess.run(
            as_pg_user(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log_file),
                    "-o",
                    pg_server_options(ports.postgres),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        say(f"postgres: started on port {ports.postgres}, log {log_file}")
    postgres_port_file(LOCAL).write_text(f"{ports.postgres}\n")
    admin_url = f"postgresql://postgres@127.0.0.1:{ports.postgres}/postgres"
    wait_for_postgres(admin_url)
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    wait_for_postgres(url)
    say(f"postgres: ready at {url}")
    return url


def wait_for_postgres(url: str, timeout: float = 60.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            last_error = str(exc).strip()
        time.sleep(0.5)
    raise StackError(f"postgres at {url} not ready after {timeout:.0f}s: {last_error}")


def stop_postgres() -> None:
    if os.environ.get("DATABASE_URL"):
        say("postgres: external (DATABASE_URL), left running")
        return
    data = PG_DIR / "data"
    if not (data / "PG_VERSION").exists():
        say("postgres: no private cluster")
        return
    bin_dir = pg_bin()
    result = subprocess.run(
        as_pg_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
        capture_output=True,
        text=True,
    )
    say("postgres: stopped" if result.returncode == 0 else "postgres: not running")


PG_STOP_MODES = ("smart", "fast", "immediate")


def stop_private_postgres(mode: str = "fast") -> None:
    """``pg_ctl stop -m MODE``: smart waits for every client to leave, fast ends their
    sessions (rolling back what is open), immediate quits without a clean shutdown (the
    next start recovers from the WAL, as after a crash)."""
    if mode not in PG_STOP_MODES:
        raise StackError(f"--mode must be one of {', '.join(PG_STOP_MODES)}, not {mode!r}")
    bin_dir = pg_bin()
    if not pg_running(bin_dir):
        say("postgres: not running")
        return
    result = subprocess.run(
        as_pg_user(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(PG_DIR / "data"),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
                "stop",
            ]
        ),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        hint = "" if mode != "smart" else " (smart waits for every client to leave: --mode fast)"
        raise StackError(
            f"postgres: pg_ctl stop -m {mode} failed: "
            f"{(result.stderr or result.stdout).strip()}{hint}"
        )
    say(f"postgres: stopped (-m {mode}); connections are refused until start-postgres")


def restart_private_postgres(ports: Ports) -> None:
    """``pg_ctl restart -m fast``: every session is ended, then the same cluster starts
    on the same port; returns once it accepts connections."""
    bin_dir = pg_bin()
    log_file = LOG_DIR / "postgres.log"
    result = subprocess.run(
        as_pg_user(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(PG_DIR / "data"),
                "-l",
                str(log_file),
                "-o",
                pg_server_options(ports.postgres),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "restart",
            ]
        ),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(
            f"postgres: pg_ctl restart failed: {(result.stderr or result.stdout).strip()}; "
            f"see {log_file}"
        )
    wait_for_postgres(private_postgres_url(ports.postgres))
    say(f"postgres: restarted (-m fast) on port {ports.postgres}; every session was ended")


# ---------------------------------------------------------------------- Toxiproxy


def toxiproxy_specs(cluster: Cluster, private_postgres: bool) -> list[toxiproxy.ProxySpec]:
    """The stack's proxies: Kafka in front of node 1's PROXIED listener, PostgreSQL in
    front of the private cluster (none for an external DATABASE_URL)."""
    proxy = cluster.proxy
    if proxy is None:
        return []
    specs = [
        toxiproxy.ProxySpec(
            toxiproxy.KAFKA_PROXY, proxy.kafka_bootstrap, f"127.0.0.1:{proxy.kafka_listener}"
        )
    ]
    if private_postgres:
        specs.append(
            toxiproxy.ProxySpec(
                toxiproxy.POSTGRES_PROXY,
                f"127.0.0.1:{proxy.postgres}",
                f"127.0.0.1:{cluster.ports.postgres}",
            )
        )
    return specs


def start_toxiproxy(proxy: ProxyPorts, specs: list[toxiproxy.ProxySpec]) -> None:
    """Toxiproxy on ``proxy.api`` serving ``specs`` (built first if need be); returns
    once every proxy listens. A running server keeps its toxics."""
    try:
        binary = toxiproxy.ensure_binary(BIN_DIR)
    except toxiproxy.ToxiproxyError as exc:
        raise StackError(str(exc)) from exc
    config = toxiproxy.write_config(TOXIPROXY_DIR / "proxies.json", specs)
    log_file = LOG_DIR / "toxiproxy.log"
    pid = read_pid(TOXIPROXY_PID)
    if pid is None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as out:
            proc = subprocess.Popen(
                toxiproxy.server_command(binary, proxy.api, config),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        TOXIPROXY_PID.write_text(str(proc.pid))
        say(f"toxiproxy: started pid {proc.pid}, API {proxy.toxiproxy_url}, log {log_file}")
    else:
        say(f"toxiproxy: already running (pid {pid}), API {proxy.toxiproxy_url}")
    with toxiproxy.Toxiproxy(proxy.toxiproxy_url) as client:
        try:
            client.wait_ready(15, alive=lambda: read_pid(TOXIPROXY_PID) is not None)
            for spec in specs:
                client.ensure_proxy(spec)
        except toxiproxy.ToxiproxyError as exc:
            raise StackError(f"{exc}; see {log_file}") from exc
    for spec in specs:
        say(f"toxiproxy: proxy {spec.name!r} {spec.listen} -> {spec.upstream}")


def stop_toxiproxy() -> None:
    if TOXIPROXY_PID.exists():
        stop_pid(TOXIPROXY_PID, "toxiproxy")


# ------------------------------------------------------------------------ commands


def write_env(
    bootstrap: str,
    database_url: str,
    creds: Credentials | None,
    proxy: ProxyPorts | None = None,
    proxied_database_url: str | None = None,
) -> None:
    """``stack.env``: where the stack is and, for the local broker, the admin login
    (so the file is mode 600). The services' own principals come from kafka-access.
    On a ``--proxy`` stack, also where the proxy is (for the fault tests)."""
    lines = [f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap}", f"export DATABASE_URL={database_url}"]
    if creds is not None:
        lines += [
            f"export KAFKA_SECURITY_PROTOCOL={SASL_PROTOCOL}",
            f"export KAFKA_SASL_MECHANISM={SASL_MECHANISM}",
            f"export KAFKA_SASL_USERNAME={ADMIN_USER}",
            f"export KAFKA_SASL_PASSWORD={creds.admin}",
            # Where `kafka-access apply` keeps the services' passwords by default.
            f"export SL_STACK_DIR={LOCAL}",
        ]
    if proxy is not None:
        lines += [
            f"export SL_TOXIPROXY_URL={proxy.toxiproxy_url}",
            f"export SL_KAFKA_PROXY_BOOTSTRAP={proxy.kafka_bootstrap}",
        ]
        if proxied_database_url:
            lines.append(f"export SL_DATABASE_PROXY_URL={proxied_database_url}")
    write_private(ENV_FILE, "\n".join(lines) + "\n")


def cmd_start(cluster: Cluster) -> None:
    LOCAL.mkdir(parents=True, exist_ok=True)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    creds: Credentials | None = None
    if bootstrap:
        if cluster.proxy is not None:
            raise StackError(
                "--proxy needs the stack's own broker (a listener behind the proxy); "
                f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} is external"
            )
        wait_for_kafka(external_client_config(bootstrap), [], timeout=30)
    else:
        bootstrap = cluster.bootstrap
        creds = start_kafka(cluster)
    database_url = start_postgres(cluster.ports)
    proxied_database_url = None
    if cluster.proxy is not None and creds is not None:
        private_postgres = not os.environ.get("DATABASE_URL")
        start_toxiproxy(cluster.proxy, toxiproxy_specs(cluster, private_postgres))
        wait_for_kafka(
            creds.client_config(cluster.proxy.kafka_bootstrap),
            [cluster.nodes[0].pid_file],
            timeout=60,
        )
        say(f"kafka: also through toxiproxy at {cluster.proxy.kafka_bootstrap}")
        if private_postgres:
            proxied_database_url = private_postgres_url(cluster.proxy.postgres)
            wait_for_postgres(proxied_database_url, timeout=15)
            say(f"postgres: also through toxiproxy at {proxied_database_url}")
    else:
        stop_toxiproxy()
    write_env(bootstrap, database_url, creds, cluster.proxy, proxied_database_url)
    say(f"stack is up. KAFKA_BOOTSTRAP_SERVERS={bootstrap} DATABASE_URL={database_url}")
    say(f"logs: {LOG_DIR}")


def stop_nodes(cluster: Cluster) -> None:
    """SIGTERM every node at once, then wait for each: stopped one by one, the last node
    would wait out its controlled shutdown for a quorum that is already gone."""
    for node in cluster.nodes:
        pid = read_pid(node.pid_file)
        if pid is not None:
            terminate(pid)
    for node in reversed(cluster.nodes):
        stop_pid(node.pid_file, node.name)


def cmd_stop(cluster: Cluster) -> None:
    stop_nodes(cluster)
    stop_toxiproxy()
    stop_postgres()


def cmd_restart(cluster: Cluster) -> None:
    cmd_stop(cluster)
    cmd_start(cluster)


def _local_nodes_running(cluster: Cluster) -> None:
    if all(read_pid(node.pid_file) is None for node in cluster.nodes):
        raise StackError(
            "the local Kafka cluster is not running (is KAFKA_BOOTSTRAP_SERVERS external?)"
        )


def stack_env(stack_dir: Path) -> dict[str, str]:
    """What ``stack.env`` in ``stack_dir`` says; empty when there is none."""
    path = stack_dir / "stack.env"
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if sep:
            values[key.strip()] = value
    return values


def _host_port(url: str) -> str:
    """Where a database URL points, without its user or password (for messages)."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}"
    except ValueError:
        return "an unparsable URL"


def _recorded_stack() -> dict[str, str]:
    recorded = stack_env(LOCAL)
    if not recorded:
        raise StackError(f"no stack in {LOCAL} (no stack.env): `./run stack start` first")
    return recorded


def require_local_kafka(cluster: Cluster) -> None:
    """Refuse a broker fault unless this stack directory's Kafka is the one this script
    started and the environment names no other cluster."""
    recorded = _recorded_stack()
    if (
        recorded.get("KAFKA_BOOTSTRAP_SERVERS") != cluster.bootstrap
        or "KAFKA_SASL_PASSWORD" not in recorded
    ):
        raise StackError(
            f"the stack in {LOCAL} uses Kafka at {recorded.get('KAFKA_BOOTSTRAP_SERVERS')}, "
            f"not brokers it started on {cluster.bootstrap}: broker faults act only on the "
            "stack's own brokers"
        )
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    ours = {node.address for node in cluster.nodes}
    if cluster.proxy is not None:
        ours.add(cluster.proxy.kafka_bootstrap)
    if given and not {address.strip() for address in given.split(",")} <= ours:
        raise StackError(
            f"KAFKA_BOOTSTRAP_SERVERS={given} is not this stack's Kafka ({cluster.bootstrap}, "
            f"{ENV_FILE}): no fault on another cluster. Unset it, or point SL_STACK_DIR at "
            "the stack it belongs to"
        )


def require_private_postgres(cluster: Cluster) -> None:
    """Refuse a PostgreSQL fault unless this stack runs its own private cluster and the
    environment's DATABASE_URL, if any, is that cluster (directly or through the proxy)."""
    recorded = _recorded_stack()
    if not (PG_DIR / "data" / "PG_VERSION").exists():
        raise StackError(
            f"no private PostgreSQL cluster in {PG_DIR}: `./run stack start` makes one"
        )
    port = cluster.ports.postgres
    if recorded.get("DATABASE_URL") != private_postgres_url(port):
        raise StackError(
            f"the stack in {LOCAL} uses the database at "
            f"{_host_port(recorded.get('DATABASE_URL', ''))}, not its private cluster on "
            f"127.0.0.1:{port}: PostgreSQL faults act only on the stack's own cluster"
        )
    given = os.environ.get("DATABASE_URL")
    if given:
        ports = {port} | ({cluster.proxy.postgres} if cluster.proxy is not None else set())
        try:
            parts = urlsplit(given)
            ours = parts.hostname in ("127.0.0.1", "localhost") and parts.port in ports
        except ValueError:
            ours = False
        if not ours:
            raise StackError(
                f"DATABASE_URL points at {_host_port(given)}, not this stack's PostgreSQL "
                f"(127.0.0.1:{port}, {ENV_FILE}): no fault on another database. Unset it, or "
                "point SL_STACK_DIR at the stack it belongs to"
            )


def cmd_restart_kafka(cluster: Cluster) -> None:
    """Stop every local node (SIGTERM) and start them again: the chaos suite's broker
    restart (an outage on one node, a rolling-free full restart on a cluster)."""
    _local_nodes_running(cluster)
    stop_nodes(cluster)
    start_kafka(cluster)


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def cmd_kill_broker(cluster: Cluster, node_id: int) -> None:
    """SIGKILL one node, as a crashed machine: no controlled shutdown, no leader handover."""
    require_local_kafka(cluster)
    node = cluster.node(node_id)
    pid = read_pid(node.pid_file)
    if pid is None:
        say(f"{node.name}: not running")
        return
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: read_pid(node.pid_file) is None, 30)
    say(f"{node.name}: killed (SIGKILL, pid {pid})")


def cmd_start_broker(cluster: Cluster, node_id: int) -> None:
    """Start one node again and wait until the whole cluster takes transactions."""
    require_local_kafka(cluster)
    node = cluster.node(node_id)
    creds = kafka_credentials()
    start_node(cluster, node, creds)
    wait_for_kafka(
        creds.client_config(cluster.bootstrap),
        [n.pid_file for n in cluster.nodes],
        brokers=cluster.brokers,
    )


def cmd_pause_broker(cluster: Cluster, node_id: int) -> None:
    """SIGSTOP one node's JVM: unlike a killed broker it refuses nothing, its ports take
    connections and every request waits (clients see timeouts, not errors)."""
    require_local_kafka(cluster)
    node = cluster.node(node_id)
    pid = read_pid(node.pid_file)
    if pid is None:
        raise StackError(
            f"{node.name}: not running, nothing to pause (`start-broker --node {node.id}`)"
        )
    if is_paused(pid):
        say(f"{node.name}: already paused (pid {pid})")
        return
    os.kill(pid, signal.SIGSTOP)
    if not _wait(lambda: is_paused(pid), 5):
        raise StackError(f"{node.name}: pid {pid} did not stop after SIGSTOP")
    say(f"{node.name}: paused (SIGSTOP, pid {pid}); `resume-broker --node {node.id}` continues it")


def cmd_resume_broker(cluster: Cluster, node_id: int, wait: bool = False) -> None:
    """SIGCONT a paused node; with ``wait``, return once the cluster takes transactions."""
    require_local_kafka(cluster)
    node = cluster.node(node_id)
    pid = read_pid(node.pid_file)
    if pid is None:
        raise StackError(
            f"{node.name}: not running, nothing to resume (`start-broker --node {node.id}`)"
        )
    if not is_paused(pid):
        say(f"{node.name}: not paused (pid {pid} is running)")
    else:
        os.kill(pid, signal.SIGCONT)
        if not _wait(lambda: not is_paused(pid), 5):
            raise StackError(f"{node.name}: pid {pid} still stopped after SIGCONT")
        say(f"{node.name}: resumed (SIGCONT, pid {pid})")
    if wait:
        wait_for_kafka(
            kafka_credentials().client_config(cluster.bootstrap),
            [n.pid_file for n in cluster.nodes],
            brokers=cluster.brokers,
        )


def cmd_stop_postgres(cluster: Cluster, mode: str) -> None:
    require_private_postgres(cluster)
    stop_private_postgres(mode)


def cmd_start_postgres(cluster: Cluster) -> None:
    require_private_postgres(cluster)
    start_private_postgres(cluster.ports)


def cmd_restart_postgres(cluster: Cluster) -> None:
    require_private_postgres(cluster)
    restart_private_postgres(cluster.ports)


def cmd_status(cluster: Cluster) -> int:
    healthy = True
    for node in cluster.nodes:
        pid = read_pid(node.pid_file)
        if pid is None:
            say(f"{node.name}: not running ({node.address})")
            healthy = False
        elif is_paused(pid):
            say(f"{node.name}: pid {pid} on {node.address} is PAUSED (SIGSTOP; resume-broker)")
            healthy = False
        else:
            say(f"{node.name}: pid {pid} on {node.address}, log {node.log_dir / 'kafka.log'}")
    if healthy:
        try:
            if formatted_without_scram():
                raise StackError("its storage predates SASL; `start` or `restart` recreates it")
            client = kafka_credentials().client_config(cluster.bootstrap)
            wait_for_kafka(
                client, [n.pid_file for n in cluster.nodes], timeout=15, brokers=cluster.brokers
            )
        except StackError as exc:
            say(f"kafka: running but unhealthy: {exc}")
            healthy = False
    url = os.environ.get("DATABASE_URL") or private_postgres_url(cluster.ports.postgres)
    try:
        wait_for_postgres(url, timeout=3)
        say(f"postgres: ready at {url}")
    except StackError:
        say(f"postgres: not answering at {url}")
        healthy = False
    if cluster.proxy is not None and not toxiproxy_status(cluster.proxy):
        healthy = False
    return 0 if healthy else 1


def toxiproxy_status(proxy: ProxyPorts) -> bool:
    """Say what each proxy does (enabled, its toxics); False if Toxiproxy is down."""
    pid = read_pid(TOXIPROXY_PID)
    if pid is None:
        say(f"toxiproxy: not running ({proxy.toxiproxy_url})")
        return False
    try:
        with toxiproxy.Toxiproxy(proxy.toxiproxy_url) as api:
            for name, state in sorted(api.proxies().items()):
                toxics = ", ".join(toxic.name for toxic in api.toxics(name)) or "no toxics"
                enabled = "enabled" if state.get("enabled") else "DISABLED"
                say(
                    f"toxiproxy: {name} {state.get('listen')} -> {state.get('upstream')} "
                    f"{enabled}, {toxics}"
                )
    except toxiproxy.ToxiproxyError as exc:
        say(f"toxiproxy: pid {pid} not answering: {exc}")
        return False
    return True


def cmd_kafka_tool(args: list[str]) -> int:
    """Run one of Kafka's own tools, e.g. ``kafka-tool ConsumerGroupCommand --describe ...``.

    On the local SASL stack the tool logs in as ``admin``: ``--command-config`` with the
    stack's admin client properties is added unless the arguments name one."""
    ensure_kafka_jars()
    if not args:
        raise StackError("name a tool class, e.g. ConsumerGroupCommand or TopicCommand")
    main = args[0] if "." in args[0] else f"org.apache.kafka.tools.{args[0]}"
    if args[0].startswith("consumer.group") or args[0] == "ConsumerGroupCommand":
        main = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
    rest = args[1:]
    if ADMIN_CLIENT_PROPERTIES.exists() and "--command-config" not in rest:
        rest += ["--command-config", str(ADMIN_CLIENT_PROPERTIES)]
    return subprocess.run(java_command(main, *rest)).returncode


# -------------------------------------------------------------------- Python API
#
# The fault tests drive a stack of their own from Python. Each function runs this
# script on ``stack_dir`` in a process of its own, so the stack's files (layout, ports,
# stack.env) decide what it acts on, never the calling process's environment, and the
# same checks and messages apply as on the command line.

STACK_VARIABLES = frozenset(
    {
        "DATABASE_URL",
        "SL_STACK_DIR",
        "SL_KAFKA_PORT",
        "SL_KAFKA_CONTROLLER_PORT",
        "SL_KAFKA_BROKERS",
        "SL_KAFKA_LIBS",
        "SL_POSTGRES_PORT",
        *PROXY_PORT_VARIABLES.values(),
    }
)
"""Variables that name a stack, its servers or its ports: never passed from the caller."""


def stack_process_env(stack_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment less every KAFKA_* and stack variable, plus SL_STACK_DIR."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KAFKA_") and key not in STACK_VARIABLES
    }
    return {**env, "SL_STACK_DIR": str(stack_dir), **(extra or {})}


def run_stack(
    stack_dir: Path, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 300
) -> str:
    """``localstack.py ARGS`` on ``stack_dir``; its output (echoed), or ``StackError``
    with the end of it."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        env=stack_process_env(stack_dir, extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise StackError(f"localstack {' '.join(args)} on {stack_dir} failed: {output}")
    return done.stdout


def start_private_stack(
    stack_dir: Path,
    ports: Ports,
    *,
    proxy: bool = True,
    kafka_libs: Path | None = None,
    timeout: float = 300,
) -> dict[str, str]:
    """Start a stack of its own in ``stack_dir`` (one broker, a private PostgreSQL and,
    with ``proxy``, Toxiproxy) on ``ports``; returns its stack.env as a dict. The Kafka
    jars are ``kafka_libs``, else this process's stack's when they are built."""
    extra = {
        "SL_KAFKA_PORT": str(ports.kafka),
        "SL_KAFKA_CONTROLLER_PORT": str(ports.controller),
        "SL_POSTGRES_PORT": str(ports.postgres),
    }
    libs = kafka_libs or (KAFKA_LIBS if (KAFKA_LIBS / ".complete").exists() else None)
    if libs is not None:
        extra["SL_KAFKA_LIBS"] = str(libs)
    args = ["start", "--brokers", "1", "--proxy" if proxy else "--no-proxy"]
    run_stack(stack_dir, *args, extra_env=extra, timeout=timeout)
    return stack_env(stack_dir)


def stop_stack(stack_dir: Path) -> None:
    """Stop the stack's broker(s), Toxiproxy and private PostgreSQL."""
    run_stack(stack_dir, "stop", timeout=180)


def stop_postgres_cluster(stack_dir: Path, mode: str = "fast") -> None:
    """``stop-postgres --mode MODE``: connections are refused until
    ``start_postgres_cluster``."""
    run_stack(stack_dir, "stop-postgres", "--mode", mode, timeout=120)


def start_postgres_cluster(stack_dir: Path) -> None:
    """``start-postgres``: the same cluster on the same port; returns once it accepts
    connections."""
    run_stack(stack_dir, "start-postgres", timeout=120)


def restart_postgres_cluster(stack_dir: Path) -> None:
    """``restart-postgres`` (``pg_ctl restart -m fast``): every session ends."""
    run_stack(stack_dir, "restart-postgres", timeout=180)


def kill_broker(stack_dir: Path, node: int = 1) -> None:
    """``kill-broker --node N``: SIGKILL, no controlled shutdown."""
    run_stack(stack_dir, "kill-broker", "--node", str(node), timeout=60)


def start_broker(stack_dir: Path, node: int = 1) -> None:
    """``start-broker --node N``: returns once the cluster takes transactions again."""
    run_stack(stack_dir, "start-broker", "--node", str(node), timeout=300)


def pause_broker(stack_dir: Path, node: int = 1) -> None:
    """``pause-broker --node N``: SIGSTOP, the broker hangs instead of refusing."""
    run_stack(stack_dir, "pause-broker", "--node", str(node), timeout=60)


def resume_broker(stack_dir: Path, node: int = 1, wait: bool = False) -> None:
    """``resume-broker --node N [--wait]``: SIGCONT; with ``wait``, returns once the
    cluster takes transactions again."""
    args = ["resume-broker", "--node", str(node)] + (["--wait"] if wait else [])
    run_stack(stack_dir, *args, timeout=300)


@dataclass(frozen=True)
class ProxyEndpoints:
    """Where a ``--proxy`` stack's clients go to be behind Toxiproxy, and the names of
    its proxies for the Toxiproxy client."""

    toxiproxy_url: str
    kafka_bootstrap: str
    """Bootstrap here and every connection to the broker goes through the proxy."""
    kafka_proxy: str
    postgres_port: int | None
    """Toxiproxy's port in front of PostgreSQL; None when the stack's database is
    external (no proxy for it)."""
    postgres_proxy: str | None

    def postgres_url(self, database: str = PG_DATABASE) -> str:
        """A URL of ``database`` on the stack's PostgreSQL through the proxy."""
        if self.postgres_port is None:
            raise StackError("this stack's PostgreSQL is external: no proxy in front of it")
        return private_postgres_url(self.postgres_port, database)

    def client(self) -> toxiproxy.Toxiproxy:
        return toxiproxy.Toxiproxy(self.toxiproxy_url)


def proxy_endpoints(stack_dir: Path) -> ProxyEndpoints:
    """The proxies of the stack in ``stack_dir`` (started with ``--proxy``)."""
    recorded = recorded_layout(stack_dir).get("proxy")
    if not isinstance(recorded, dict):
        raise StackError(f"the stack in {stack_dir} was not started with --proxy")
    env = stack_env(stack_dir)
    proxied_postgres = bool(env.get("SL_DATABASE_PROXY_URL"))
    return ProxyEndpoints(
        toxiproxy_url=f"http://127.0.0.1:{recorded['api']}",
        kafka_bootstrap=f"127.0.0.1:{recorded['kafka']}",
        kafka_proxy=toxiproxy.KAFKA_PROXY,
        postgres_port=int(recorded["postgres"]) if proxied_postgres else None,
        postgres_proxy=toxiproxy.POSTGRES_PROXY if proxied_postgres else None,
    )


# ------------------------------------------------------------------ command line

COMMANDS = [
    "start",
    "stop",
    "restart",
    "restart-kafka",
    "kill-broker",
    "start-broker",
    "pause-broker",
    "resume-broker",
    "stop-postgres",
    "start-postgres",
    "restart-postgres",
    "status",
    "env",
    "kafka-tool",
    "fetch-kafka",
]


def _node_argument(ns: argparse.Namespace, cluster: Cluster) -> int:
    """``--node N`` or (the older form of kill-broker / start-broker) ``N``; default 1."""
    if ns.args and ns.node is not None:
        raise StackError(f"{ns.command}: name the node once (--node N)")
    if ns.args:
        if len(ns.args) != 1 or not ns.args[0].isdigit():
            raise StackError(f"{ns.command} takes one node id (1..{cluster.brokers})")
        return int(ns.args[0])
    return int(ns.node) if ns.node is not None else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="localstack",
        description="Start, stop and check the local Kafka cluster and PostgreSQL, and "
        "inject faults into them. "
        "Ports: SL_KAFKA_PORT (19092), SL_KAFKA_CONTROLLER_PORT (19093), SL_POSTGRES_PORT "
        "(55432); node n of a larger cluster listens on those plus 2*(n-1); with --proxy, "
        "Toxiproxy's API, its Kafka and PostgreSQL proxies and the broker's proxied listener "
        "on the Kafka port plus 10, 11, 13 and 12 (SL_TOXIPROXY_PORT, SL_KAFKA_PROXY_PORT, "
        "SL_POSTGRES_PROXY_PORT, SL_KAFKA_PROXIED_LISTENER_PORT). "
        "KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, when set, are used instead of local servers; "
        "the fault commands refuse them unless they name this stack.",
    )
    parser.add_argument(
        "command",
        choices=COMMANDS,
        help="fetch-kafka: only fetch the Kafka jars (stdlib only: ./run does it with the "
        "system python3 while it builds .venv); "
        "kill-broker / start-broker: SIGKILL one node, start it again and wait; "
        "pause-broker / resume-broker: SIGSTOP / SIGCONT one node; stop-postgres / "
        "start-postgres / restart-postgres: the private PostgreSQL (restart: -m fast)",
    )
    parser.add_argument(
        "--brokers",
        type=int,
        default=None,
        help="start: how many KRaft nodes (broker and controller each) on a fresh stack "
        f"directory, 1 to {MAX_BROKERS} (SL_KAFKA_BROKERS; default 1). With 3 or more, "
        "Kafka's internal topics get 3 replicas and min.insync.replicas=2.",
    )
    parser.add_argument(
        "--proxy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start: run Toxiproxy with a proxy in front of a second broker listener (which "
        "advertises the proxy) and one in front of PostgreSQL; one node only. Kept for the "
        "stack directory until --no-proxy",
    )
    parser.add_argument("--node", type=int, default=None, help="the node of a broker command (1)")
    parser.add_argument(
        "--mode",
        choices=PG_STOP_MODES,
        default="fast",
        help="stop-postgres: pg_ctl's shutdown mode (default fast: sessions are ended)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="resume-broker: return once the cluster takes transactions again",
    )
    parser.add_argument("args", nargs="*", help="kafka-tool: the tool and its arguments")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kafka-tool"]:  # the tool's own options are not ours to parse
        ns = parser.parse_args(["kafka-tool"])
        ns.args = argv[1:]
    else:
        ns = parser.parse_args(argv)
    try:
        ports = Ports.from_env()
        brokers = cluster_size(ns.brokers)
        wanted = ns.proxy if ns.command in ("start", "restart") else None
        proxy = ProxyPorts.resolve(ports, wanted)
        if proxy is not None and brokers != 1:
            raise StackError(
                f"--proxy is for a one-node stack; this one has {brokers} nodes "
                "(or SL_KAFKA_PROXY_PORT is set)"
            )
        return run_command(ns, Cluster(ports, brokers, proxy))
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1


def run_command(ns: argparse.Namespace, cluster: Cluster) -> int:
    """Run the parsed command; its exit code."""
    broker_commands: dict[str, Callable[[Cluster, int], None]] = {
        "kill-broker": cmd_kill_broker,
        "start-broker": cmd_start_broker,
        "pause-broker": cmd_pause_broker,
        "resume-broker": lambda c, node: cmd_resume_broker(c, node, wait=ns.wait),
    }
    commands: dict[str, Callable[[Cluster], None]] = {
        "start": cmd_start,
        "stop": cmd_stop,
        "restart": cmd_restart,
        "restart-kafka": cmd_restart_kafka,
        "stop-postgres": lambda c: cmd_stop_postgres(c, ns.mode),
        "start-postgres": cmd_start_postgres,
        "restart-postgres": cmd_restart_postgres,
    }
    if ns.command in broker_commands:
        broker_commands[ns.command](cluster, _node_argument(ns, cluster))
    elif ns.command in commands:
        commands[ns.command](cluster)
    elif ns.command == "status":
        return cmd_status(cluster)
    elif ns.command == "env":
        print(ENV_FILE.read_text() if ENV_FILE.exists() else "", end="")
    elif ns.command == "kafka-tool":
        return cmd_kafka_tool(ns.args)
    elif ns.command == "fetch-kafka":
        ensure_kafka_jars()
    return 0


if __name__ == "__main__":
    sys.exit(main())

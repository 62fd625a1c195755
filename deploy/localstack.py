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

    python deploy/localstack.py start [--brokers N]|stop|status|env|kafka-tool ...
    python deploy/localstack.py kill-broker N|start-broker N   (failover tests)
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
from dataclasses import dataclass
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
LOCAL = Path(os.environ.get("SL_STACK_DIR", DEPLOY / ".local"))
# The Maven-built distribution; SL_KAFKA_LIBS lets a second stack (the tests' three-broker
# cluster) share the first one's jars instead of copying them again.
KAFKA_LIBS = Path(os.environ.get("SL_KAFKA_LIBS") or LOCAL / "kafka-libs")
KAFKA_DIR = LOCAL / "kafka"
PG_DIR = LOCAL / "postgres"
LOG_DIR = LOCAL / "logs"
ENV_FILE = LOCAL / "stack.env"
CREDENTIALS_FILE = KAFKA_DIR / "credentials.json"
ADMIN_CLIENT_PROPERTIES = KAFKA_DIR / "admin-client.properties"
ADMIN_USER = "admin"
SASL_PROTOCOL = "SASL_PLAINTEXT"
SASL_MECHANISM = "SCRAM-SHA-512"
LAYOUT_FILE = KAFKA_DIR / "layout.json"  # brokers and ports the cluster was started with
PG_OS_USER = "sl-postgres"
PG_DATABASE = "social_loyalty"


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
        return cls(
            kafka=int(os.environ.get("SL_KAFKA_PORT") or layout.get("kafka_port", 19092)),
            controller=int(
                os.environ.get("SL_KAFKA_CONTROLLER_PORT") or layout.get("controller_port", 19093)
            ),
            postgres=int(os.environ.get("SL_POSTGRES_PORT", "55432")),
        )


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


def stop_pid(pid_file: Path, name: str, timeout: float = 30.0) -> None:
    pid = read_pid(pid_file)
    if pid is None:
        say(f"{name}: not running")
        pid_file.unlink(missing_ok=True)
        return
    with contextlib.suppress(ProcessLookupError):  # it may be on its way out already
        os.kill(pid, signal.SIGTERM)
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
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(DEPLOY / "kafka" / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={KAFKA_LIBS}",
        ],
        check=True,
    )
    marker.touch()


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
    text = template.format(
        node_id=node.id,
        quorum_voters=cluster.quorum_voters,
        port=node.port,
        controller_port=node.controller_port,
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
    if read_pid(node.pid_file) is not None:
        say(f"{node.name}: already running (pid {read_pid(node.pid_file)})")
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
    LAYOUT_FILE.write_text(
        json.dumps(
            {
                "brokers": cluster.brokers,
                "kafka_port": cluster.ports.kafka,
                "controller_port": cluster.ports.controller,
            }
        )
    )
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
    url = f"postgresql://postgres@127.0.0.1:{ports.postgres}/{PG_DATABASE}"
    status = subprocess.run(
        as_pg_user([str(bin_dir / "pg_ctl"), "-D", str(data), "status"]), capture_output=True
    )
    if status.returncode == 0:
        say("postgres: already running")
    else:
        options = (
            f"-p {ports.postgres} -c listen_addresses=127.0.0.1 -k {socket_dir} "
            "-c max_connections=200 -c fsync=on"
        )
        subprocess.run(
            as_pg_user(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        say(f"postgres: started, log {log_file}")
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


# ------------------------------------------------------------------------ commands


def write_env(bootstrap: str, database_url: str, creds: Credentials | None) -> None:
    """``stack.env``: where the stack is and, for the local broker, the admin login
    (so the file is mode 600). The services' own principals come from kafka-access."""
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
    write_private(ENV_FILE, "\n".join(lines) + "\n")


def cmd_start(cluster: Cluster) -> None:
    LOCAL.mkdir(parents=True, exist_ok=True)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    creds: Credentials | None = None
    if bootstrap:
        wait_for_kafka(external_client_config(bootstrap), [], timeout=30)
    else:
        bootstrap = cluster.bootstrap
        creds = start_kafka(cluster)
    database_url = start_postgres(cluster.ports)
    write_env(bootstrap, database_url, creds)
    say(f"stack is up. KAFKA_BOOTSTRAP_SERVERS={bootstrap} DATABASE_URL={database_url}")
    say(f"logs: {LOG_DIR}")


def stop_nodes(cluster: Cluster) -> None:
    """SIGTERM every node at once, then wait for each: stopped one by one, the last node
    would wait out its controlled shutdown for a quorum that is already gone."""
    for node in cluster.nodes:
        pid = read_pid(node.pid_file)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
    for node in reversed(cluster.nodes):
        stop_pid(node.pid_file, node.name)


def cmd_stop(cluster: Cluster) -> None:
    stop_nodes(cluster)
    stop_postgres()


def _local_nodes_running(cluster: Cluster) -> None:
    if all(read_pid(node.pid_file) is None for node in cluster.nodes):
        raise StackError(
            "the local Kafka cluster is not running (is KAFKA_BOOTSTRAP_SERVERS external?)"
        )


def cmd_restart_kafka(cluster: Cluster) -> None:
    """Stop every local node (SIGTERM) and start them again: the chaos suite's broker
    restart (an outage on one node, a rolling-free full restart on a cluster)."""
    _local_nodes_running(cluster)
    stop_nodes(cluster)
    start_kafka(cluster)


def cmd_kill_broker(cluster: Cluster, node_id: int) -> None:
    """SIGKILL one node, as a crashed machine: no controlled shutdown, no leader handover."""
    _local_nodes_running(cluster)
    node = cluster.node(node_id)
    pid = read_pid(node.pid_file)
    if pid is None:
        say(f"{node.name}: not running")
        return
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while read_pid(node.pid_file) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    say(f"{node.name}: killed (SIGKILL, pid {pid})")


def cmd_start_broker(cluster: Cluster, node_id: int) -> None:
    """Start one node again and wait until the whole cluster takes transactions."""
    node = cluster.node(node_id)
    creds = kafka_credentials()
    start_node(cluster, node, creds)
    wait_for_kafka(
        creds.client_config(cluster.bootstrap),
        [n.pid_file for n in cluster.nodes],
        brokers=cluster.brokers,
    )


def cmd_status(cluster: Cluster) -> int:
    healthy = True
    for node in cluster.nodes:
        pid = read_pid(node.pid_file)
        if pid is None:
            say(f"{node.name}: not running ({node.address})")
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
    url = os.environ.get("DATABASE_URL") or (
        f"postgresql://postgres@127.0.0.1:{cluster.ports.postgres}/{PG_DATABASE}"
    )
    try:
        wait_for_postgres(url, timeout=3)
        say(f"postgres: ready at {url}")
    except StackError:
        say(f"postgres: not answering at {url}")
        healthy = False
    return 0 if healthy else 1


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="localstack",
        description="Start, stop and check the local Kafka cluster and PostgreSQL. "
        "Ports: SL_KAFKA_PORT (19092), SL_KAFKA_CONTROLLER_PORT (19093), SL_POSTGRES_PORT "
        "(55432); node n of a larger cluster listens on those plus 2*(n-1). "
        "KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, when set, are used instead of local servers.",
    )
    parser.add_argument(
        "command",
        choices=[
            "start",
            "stop",
            "restart",
            "restart-kafka",
            "kill-broker",
            "start-broker",
            "status",
            "env",
            "kafka-tool",
        ],
        help="kill-broker N / start-broker N: SIGKILL one node of the cluster, start it again",
    )
    parser.add_argument(
        "--brokers",
        type=int,
        default=None,
        help="start: how many KRaft nodes (broker and controller each) on a fresh stack "
        f"directory, 1 to {MAX_BROKERS} (SL_KAFKA_BROKERS; default 1). With 3 or more, "
        "Kafka's internal topics get 3 replicas and min.insync.replicas=2.",
    )
    parser.add_argument("args", nargs="*", help="kafka-tool: the tool and its arguments")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kafka-tool"]:  # the tool's own options are not ours to parse
        ns = parser.parse_args(["kafka-tool"])
        ns.args = argv[1:]
    else:
        ns = parser.parse_args(argv)
    try:
        cluster = Cluster(Ports.from_env(), cluster_size(ns.brokers))
        if ns.command == "start":
            cmd_start(cluster)
        elif ns.command == "stop":
            cmd_stop(cluster)
        elif ns.command == "restart":
            cmd_stop(cluster)
            cmd_start(cluster)
        elif ns.command == "restart-kafka":
            cmd_restart_kafka(cluster)
        elif ns.command in ("kill-broker", "start-broker"):
            if len(ns.args) != 1 or not ns.args[0].isdigit():
                raise StackError(f"{ns.command} takes one node id (1..{cluster.brokers})")
            run = cmd_kill_broker if ns.command == "kill-broker" else cmd_start_broker
            run(cluster, int(ns.args[0]))
        elif ns.command == "status":
            return cmd_status(cluster)
        elif ns.command == "env":
            print(ENV_FILE.read_text() if ENV_FILE.exists() else "", end="")
        elif ns.command == "kafka-tool":
            return cmd_kafka_tool(ns.args)
    except (StackError, subprocess.CalledProcessError) as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The local stack: a real Apache Kafka broker and a real PostgreSQL, no Docker.

Kafka is assembled from Maven Central jars (``deploy/kafka/pom.xml``) and run as
a single KRaft node with Java 17. PostgreSQL is the one in ``DATABASE_URL`` if
that is set, otherwise a private cluster made from the OS packages (installed
with apt-get when missing) with its data under ``deploy/.local/``.

Every command is safe to run twice. ``start`` returns only when the broker has
accepted a transactional produce and PostgreSQL has accepted a connection, and
writes ``deploy/.local/stack.env`` for the other commands to source.

Kafka is locked down: its one client listener is SASL/SCRAM-SHA-512 on loopback,
ACLs are on (KRaft ``StandardAuthorizer``, nothing allowed without an ACL) and the
super user ``admin`` has a random password made for this stack directory, kept in
``kafka/credentials.json`` (mode 600) and written into ``stack.env``. The services
get principals of their own from ``social-loyalty kafka-access apply``.

    python deploy/localstack.py start|stop|status|env|kafka-tool ...
"""

from __future__ import annotations

import argparse
import base64
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
KAFKA_LIBS = LOCAL / "kafka-libs"
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


@dataclass(frozen=True)
class Ports:
    kafka: int
    controller: int
    postgres: int

    @classmethod
    def from_env(cls) -> Ports:
        return cls(
            kafka=int(os.environ.get("SL_KAFKA_PORT", "19092")),
            controller=int(os.environ.get("SL_KAFKA_CONTROLLER_PORT", "19093")),
            postgres=int(os.environ.get("SL_POSTGRES_PORT", "55432")),
        )


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


def java_command(main_class: str, *args: str, heap: str = "256m") -> list[str]:
    return [
        "java",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={DEPLOY / 'kafka' / 'log4j2.yaml'}",
        f"-Dkafka.logs.dir={LOG_DIR}",
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
    if read_pid(KAFKA_DIR / "kafka.pid") is not None:
        stop_pid(KAFKA_DIR / "kafka.pid", "kafka (pre-SASL)")
    shutil.rmtree(KAFKA_DIR / "data")


def kafka_properties(ports: Ports, creds: Credentials) -> Path:
    template = (DEPLOY / "kafka" / "server.properties.template").read_text()
    text = template.format(
        port=ports.kafka,
        controller_port=ports.controller,
        data_dir=KAFKA_DIR / "data",
        admin_password=creds.admin,
        controller_password=creds.controller,
    )
    props = KAFKA_DIR / "server.properties"
    write_private(props, text)
    # For Kafka's own tools (kafka-tool): the admin login, passed as --command-config.
    write_private(
        ADMIN_CLIENT_PROPERTIES,
        f"security.protocol={SASL_PROTOCOL}\nsasl.mechanism={SASL_MECHANISM}\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN_USER}" password="{creds.admin}";\n',
    )
    return props


def format_kafka_storage(props: Path, creds: Credentials) -> None:
    if (KAFKA_DIR / "data" / "meta.properties").exists():
        return
    cluster_id_file = KAFKA_DIR / "cluster.id"
    if not cluster_id_file.exists():
        # A KRaft cluster id is a base64url UUID without padding, 22 characters.
        raw = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cluster_id_file.write_text(raw)
    say("formatting Kafka storage (KRaft)")
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


def start_kafka(ports: Ports) -> Credentials:
    pid_file = KAFKA_DIR / "kafka.pid"
    upgrade_pre_sasl_storage()
    creds = kafka_credentials()
    if read_pid(pid_file) is not None:
        say(f"kafka: already running (pid {read_pid(pid_file)})")
    else:
        ensure_kafka_jars()
        KAFKA_DIR.mkdir(parents=True, exist_ok=True)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        props = kafka_properties(ports, creds)
        format_kafka_storage(props, creds)
        heap = os.environ.get("SL_KAFKA_HEAP", "768m")
        with (LOG_DIR / "kafka.stdout").open("ab") as out:
            proc = subprocess.Popen(
                java_command("kafka.Kafka", str(props), heap=heap),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        pid_file.write_text(str(proc.pid))
        say(f"kafka: started pid {proc.pid}, log {LOG_DIR / 'kafka.log'}")
    wait_for_kafka(creds.client_config(f"127.0.0.1:{ports.kafka}"), pid_file)
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
    client: dict[str, str | int], pid_file: Path | None, timeout: float = 120.0
) -> None:
    """Return when the broker commits a transactional produce; that proves the
    transaction coordinator and its internal topic are up, not just the port (and,
    on the SASL stack, that the admin login and the authorizer work)."""
    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    bootstrap = client["bootstrap.servers"]
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if pid_file is not None and read_pid(pid_file) is None:
            raise StackError(f"kafka exited during start; see {LOG_DIR / 'kafka.log'}")
        try:
            # log_level 0: a broker that is still starting refuses connections,
            # which is expected here and not worth a screen of librdkafka errors.
            quiet: dict[str, str | int] = {**client, "log_level": 0}
            admin = AdminClient({**quiet, "socket.timeout.ms": 3000})
            topic = "_stack.healthcheck"
            if topic not in admin.list_topics(timeout=3).topics:
                for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
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


def cmd_start(ports: Ports) -> None:
    LOCAL.mkdir(parents=True, exist_ok=True)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    creds: Credentials | None = None
    if bootstrap:
        wait_for_kafka(external_client_config(bootstrap), None, timeout=30)
    else:
        bootstrap = f"127.0.0.1:{ports.kafka}"
        creds = start_kafka(ports)
    database_url = start_postgres(ports)
    write_env(bootstrap, database_url, creds)
    say(f"stack is up. KAFKA_BOOTSTRAP_SERVERS={bootstrap} DATABASE_URL={database_url}")
    say(f"logs: {LOG_DIR}")


def cmd_stop() -> None:
    stop_pid(KAFKA_DIR / "kafka.pid", "kafka")
    stop_postgres()


def cmd_restart_kafka(ports: Ports) -> None:
    """Stop the local broker (SIGTERM) and start it again: the chaos suite's broker restart."""
    if read_pid(KAFKA_DIR / "kafka.pid") is None:
        raise StackError(
            "the local Kafka broker is not running (is KAFKA_BOOTSTRAP_SERVERS external?)"
        )
    stop_pid(KAFKA_DIR / "kafka.pid", "kafka")
    start_kafka(ports)


def cmd_status(ports: Ports) -> int:
    healthy = True
    pid = read_pid(KAFKA_DIR / "kafka.pid")
    if pid is None:
        say("kafka: not running")
        healthy = False
    else:
        try:
            if formatted_without_scram():
                raise StackError("its storage predates SASL; `start` or `restart` recreates it")
            client = kafka_credentials().client_config(f"127.0.0.1:{ports.kafka}")
            wait_for_kafka(client, KAFKA_DIR / "kafka.pid", timeout=15)
            say(f"kafka: pid {pid}, log {LOG_DIR / 'kafka.log'}")
        except StackError as exc:
            say(f"kafka: pid {pid} but unhealthy: {exc}")
            healthy = False
    url = os.environ.get("DATABASE_URL") or (
        f"postgresql://postgres@127.0.0.1:{ports.postgres}/{PG_DATABASE}"
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
        description="Start, stop and check the local Kafka broker and PostgreSQL. "
        "Ports: SL_KAFKA_PORT (19092), SL_KAFKA_CONTROLLER_PORT (19093), SL_POSTGRES_PORT (55432). "
        "KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL, when set, are used instead of local servers.",
    )
    parser.add_argument(
        "command",
        choices=["start", "stop", "restart", "restart-kafka", "status", "env", "kafka-tool"],
    )
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    ports = Ports.from_env()
    try:
        if ns.command == "start":
            cmd_start(ports)
        elif ns.command == "stop":
            cmd_stop()
        elif ns.command == "restart":
            cmd_stop()
            cmd_start(ports)
        elif ns.command == "restart-kafka":
            cmd_restart_kafka(ports)
        elif ns.command == "status":
            return cmd_status(ports)
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

"""Where the tests get a real Kafka broker and a real PostgreSQL.

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` when set (``./run test`` sets
   them after starting the local stack);
2. otherwise testcontainers, when a Docker engine answers;
3. otherwise the test fails with a message that says how to start the stack.

Every test gets its own topic and group names from ``unique``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from pydantic import SecretStr

from services.ops.localcluster import LocalCluster, start_cluster
from services.runtime import kafka
from services.runtime.access import SCOPES, AccessSettings, SignedAuth, ensure_credential
from services.runtime.settings import DatabaseSettings, KafkaSettings

HOW_TO_START = (
    "No Kafka/PostgreSQL for integration tests: set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, "
    "or run `./run stack start && source deploy/.local/stack.env`, or use `./run test`, "
    "which starts the local stack itself."
)


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session", autouse=True)
def _no_operator_cli_context(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The namespace an operator picked with ``social-loyalty use`` never redirects the
    tests' CLI calls (as a test suite sets its own KUBECONFIG): the CLI reads contexts
    from an empty folder unless a test names its own file."""
    os.environ["SL_CLI_CONTEXTS"] = str(tmp_path_factory.mktemp("cli") / "cli-contexts.json")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    pytest.fail(HOW_TO_START, pytrace=False)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield container.get_connection_url()
        return
    pytest.fail(HOW_TO_START, pytrace=False)


@pytest.fixture(scope="module")
def three_broker_cluster(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """Three KRaft brokers of the test module's own (``./run stack start --brokers 3``
    in a temporary stack directory, free ports), sharing the session's PostgreSQL:
    started for the module (replication, failover) and stopped after it, so three idle
    JVMs do not slow the rest of the suite."""
    cluster = start_cluster(tmp_path_factory.mktemp("three-brokers"), database_url)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka_bootstrap, connect_timeout_s=10)


@pytest.fixture(scope="session")
def database_settings(database_url: str) -> DatabaseSettings:
    return DatabaseSettings(database_url=SecretStr(database_url))


@pytest.fixture(scope="session")
def access_settings(database_url: str) -> Iterator[AccessSettings]:
    """A credentials schema of this test session's own; give it to the APIs' settings
    (``access=access_settings``) so ``api_auth`` signs requests they accept."""
    settings = AccessSettings(db_schema=f"t_access_{uuid.uuid4().hex[:10]}")
    yield settings
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {settings.db_schema} CASCADE")


@pytest.fixture(scope="session")
def api_secret(database_url: str, access_settings: AccessSettings) -> str:
    """The secret of a credential with every scope, in ``access_settings``' schema."""
    return ensure_credential(database_url, access_settings.db_schema, "tests", SCOPES)


@pytest.fixture
def api_auth(api_secret: str) -> SignedAuth:
    """Signs an httpx client's requests with the all-scopes test credential."""
    return SignedAuth(api_secret)


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Names no other test (or earlier run) uses: ``unique("orders")``."""
    test = request.node.name.replace("[", "-").replace("]", "")[:40]

    def make(prefix: str) -> str:
        return f"t.{prefix}.{test}.{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def make_topic(
    kafka_settings: KafkaSettings, unique: Callable[[str], str]
) -> Iterator[Callable[..., str]]:
    """Create a fresh topic for this test; deleted afterwards."""
    admin = kafka.admin(kafka_settings, "tests.make-topic")
    created: list[str] = []

    def make(
        prefix: str = "topic", partitions: int = 1, config: dict[str, str] | None = None
    ) -> str:
        name = unique(prefix)
        futures = admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])
        futures[name].result(30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            try:
                future.result(30)
            except Exception:  # cleanup is best effort
                continue


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """A connection on a fresh schema of its own, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        try:
            yield conn
        finally:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The folder says the layer: tests/integration gets the integration marker,
    tests/e2e the e2e marker, so ``-m "not integration"`` runs the pure tests."""
    for item in items:
        path = str(item.path)
        if "/tests/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "/tests/e2e/" in path:
            item.add_marker(pytest.mark.e2e)

"""The whole system as a list of processes, as ``./run demo`` and the e2e tests start it.

One place says which command runs each service, where it answers ``/readyz`` and
which environment it gets, so the demo, the local supervisor, the e2e and the
chaos tests all run the same system.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from services.ops.supervisor import ServiceSpec


@dataclass(frozen=True)
class Ports:
    simulator: int = 8081
    collector: int = 8082
    readmodel: int = 8083
    rules_api: int = 8084
    link: int = 8085
    actions: int = 8086
    smtp: int = 8025
    providers: int = 8087
    lagmonitor: int = 9308
    detector: int = 6066
    rules: int = 6067

    @classmethod
    def from_env(cls) -> Ports:
        """The default ports moved by ``SL_PORT_OFFSET`` (e.g. 20000), so a second
        system (a demo while the tests run) does not collide with the first."""
        raw = os.environ.get("SL_PORT_OFFSET", "0")
        try:
            offset = int(raw)
        except ValueError:
            raise ValueError(f"SL_PORT_OFFSET must be a number, not {raw!r}") from None
        # Below Linux's ephemeral range (32768+): a client socket there can hold the port
        # a restarted service needs.
        if not 0 <= offset <= 23_000:
            raise ValueError(f"SL_PORT_OFFSET must be between 0 and 23000, not {offset}")
        return cls(**{f.name: getattr(cls(), f.name) + offset for f in fields(cls)})


def groups_at(groups_file: Path, ports: Ports, state_dir: Path) -> Path:
    """``groups_file`` as is, or (with ``SL_PORT_OFFSET``) a copy in ``state_dir`` whose
    simulator URLs name the moved simulator port."""
    default = f"127.0.0.1:{Ports().simulator}/"
    text = groups_file.read_text()
    if ports.simulator == Ports().simulator or default not in text:
        return groups_file
    state_dir.mkdir(parents=True, exist_ok=True)
    moved = state_dir / groups_file.name
    moved.write_text(text.replace(default, f"127.0.0.1:{ports.simulator}/"))
    return moved


def _url(port: int, path: str = "/readyz") -> str:
    return f"http://127.0.0.1:{port}{path}"


def app_stem(prefix: str) -> str:
    """The stem of the consumer groups and Faust app ids for a topic prefix: the
    services get ``<stem>.rules``, ``<stem>.detector`` and so on."""
    return prefix.rstrip(".") or "social-loyalty"


DEMO_VK_ID_CLIENT = "54000001"
DEMO_OK_CLIENT = "512000000001"  # the simulator's SIMULATOR_OK_APPLICATION_ID
DEMO_APPLE_CLIENT = "com.example.loyalty"


def identity_env(sim_base_url: str) -> dict[str, str]:
    """The link service's ``LINK_IDENTITY__*`` for the simulator's identity providers:
    the same code paths as VK ID, OK and Apple, with the simulator's demo client ids."""
    base = "LINK_IDENTITY__"
    return {
        f"{base}VK__CLIENT_ID": DEMO_VK_ID_CLIENT,
        f"{base}VK__TOKEN_URL": f"{sim_base_url}/vkid/oauth2/auth",
        f"{base}VK__USER_INFO_URL": f"{sim_base_url}/vkid/oauth2/user_info",
        f"{base}OK__CLIENT_ID": DEMO_OK_CLIENT,
        f"{base}OK__APPLICATION_KEY": "SIMOKAPPKEY",
        f"{base}OK__CLIENT_SECRET": "sim-ok-application-secret",
        f"{base}OK__TOKEN_URL": f"{sim_base_url}/oauth/token.do",
        f"{base}OK__API_URL": f"{sim_base_url}/fb.do",
        f"{base}APPLE__CLIENT_ID": DEMO_APPLE_CLIENT,
        f"{base}APPLE__JWKS_URL": f"{sim_base_url}/apple/auth/keys",
    }


def kafka_login_env(name: str, logins: Mapping[str, tuple[str, str]] | None) -> dict[str, str]:
    """A service's ``KAFKA_SASL_USERNAME``/``_PASSWORD``: its own principal's (``logins``
    maps the service name to user and password, see services/ops/kafka_access.py), or
    blank for a service that does not use Kafka, so it never inherits the admin login of
    the process that starts it. ``None``: the environment's login for everyone."""
    if logins is None:
        return {}
    user, password = logins.get(name, ("", ""))
    return {"KAFKA_SASL_USERNAME": user, "KAFKA_SASL_PASSWORD": password}


@dataclass(frozen=True)
class ServiceNames:
    """The consumer groups, app ids and transactional ids the services run with under
    one app stem: what ``service_specs`` configures and the Kafka ACLs allow
    (``services/ops/kafka_access.py``)."""

    stem: str

    @property
    def rules_app_id(self) -> str:
        return f"{self.stem}.rules"

    @property
    def detector_app_id(self) -> str:
        return f"{self.stem}.detector"

    @property
    def readmodel_group(self) -> str:
        return f"{self.stem}.readmodel"

    @property
    def actions_group_prefix(self) -> str:
        return f"{self.stem}.actions"

    @property
    def collector_transactional_prefix(self) -> str:
        return f"{self.stem}.collector"

    @property
    def lag_group_prefix(self) -> str:
        return f"{self.stem}."


@dataclass(frozen=True)
class Scaling:
    """What makes one worker of a consuming service different from its siblings: its
    HTTP port (``port_env``, the first worker's plus ``WORKER_PORT_STEP`` per worker)
    and what must be unique per worker (``per_worker``, ``{k}`` the worker's number):
    a static-membership instance id, which is also the rules worker's transactional id,
    or a local state directory."""

    port_env: str
    per_worker: Mapping[str, str] = field(default_factory=dict)


WORKER_PORT_STEP = 100
MAX_WORKERS = 9
SCALABLE: Mapping[str, Scaling] = {
    "rules": Scaling("RULES_WORKER_HTTP_PORT", {"RULES_INSTANCE_ID": "local-{k}"}),
    "detector": Scaling("DETECTOR_WORKER_PORT", {"DETECTOR_DATA_DIR": "{state_dir}/detector-{k}"}),
    "actions": Scaling("ACTIONS_PORT", {"ACTIONS_INSTANCE_ID": "local-{k}"}),
    "readmodel": Scaling("READMODEL_HTTP_PORT"),
}
"""The consuming services that run as several workers of one consumer group."""


def parse_workers(text: str) -> dict[str, int]:
    """``rules=2,detector=2,actions=2`` as ``{"rules": 2, ...}``; a ValueError says what
    is wrong (an unknown or single-instance service, a count outside 1..MAX_WORKERS)."""
    workers: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, equals, count = part.partition("=")
        if not equals or not count.strip().isdigit():
            raise ValueError(f"{part!r}: write SERVICE=COUNT, e.g. rules=2")
        name = name.strip()
        if name not in SCALABLE:
            raise ValueError(
                f"{name!r} cannot run several workers; these can: {', '.join(SCALABLE)}"
            )
        if not 1 <= int(count) <= MAX_WORKERS:
            raise ValueError(f"{name}={count}: between 1 and {MAX_WORKERS} workers")
        workers[name] = int(count)
    return workers


def workers_option(text: str | None) -> dict[str, int]:
    """``--workers`` for typer: :func:`parse_workers`, its error a usage error."""
    import typer

    try:
        return parse_workers(text or "")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


WORKERS_HELP = (
    "Run several workers of a consuming service in one consumer group, e.g. "
    "rules=2,detector=2,actions=2,readmodel=2; worker k>1 is named <service>-k, answers on "
    f"the first one's port plus {WORKER_PORT_STEP}*(k-1) and has its own instance id and "
    "state directory."
)


def _scaled(spec: ServiceSpec, workers: int, state_dir: Path) -> list[ServiceSpec]:
    """``spec`` as worker 1 and its siblings ``<name>-2`` .. ``<name>-<workers>``."""
    scaling = SCALABLE.get(spec.name)
    if scaling is None or workers <= 1:
        return [spec]
    first_port = int(spec.env[scaling.port_env])
    out = []
    for k in range(1, workers + 1):
        port = first_port + WORKER_PORT_STEP * (k - 1)
        own = {  # worker 1 keeps the names a single worker has always had
            key: value.format(k=k, state_dir=state_dir)
            for key, value in scaling.per_worker.items()
            if k > 1
        }
        out.append(
            ServiceSpec(
                spec.name if k == 1 else f"{spec.name}-{k}",
                spec.args,
                _url(port),
                {**spec.env, scaling.port_env: str(port), **own},
                login=spec.name,
            )
        )
    return out


def service_specs(
    *,
    prefix: str,
    state_dir: Path,
    groups_file: Path,
    ports: Ports = Ports(),
    simulator: bool = True,
    kafka_logins: Mapping[str, tuple[str, str]] | None = None,
    workers: Mapping[str, int] | None = None,
) -> list[ServiceSpec]:
    """Every service of the system, in start order (dependencies first).

    ``prefix`` names the topics (``TOPIC_PREFIX``), consumer groups and Faust app
    ids, so a run is isolated from any other on the same cluster. ``kafka_logins``
    (service name -> SCRAM user and password) gives each service its own principal.
    ``workers`` (see :func:`parse_workers`) runs several workers of a consuming
    service: ``rules``, ``rules-2``, ... in one consumer group, each with its own port,
    instance id and state directory, all logged in as that service.
    """
    names = ServiceNames(app_stem(prefix))
    counts = dict(workers or {})
    unknown = sorted(set(counts) - set(SCALABLE))
    if unknown:
        raise ValueError(f"cannot run several workers of {unknown}; these can: {list(SCALABLE)}")
    specs: list[ServiceSpec] = []
    if simulator:
        specs.append(
            ServiceSpec(
                "simulator",
                ("services.simulator", "serve", "--port", str(ports.simulator), "--seed-demo"),
                ready_url=_url(ports.simulator),
            )
        )
    specs += [
        ServiceSpec(
            "sinks",
            (
                "services.actions",
                "sinks",
                "--smtp-port",
                str(ports.smtp),
                "--http-port",
                str(ports.providers),
            ),
            ready_url=_url(ports.providers),
        ),
        ServiceSpec(
            "actions",
            ("services.actions", "run"),
            ready_url=_url(ports.actions),
            env={
                "ACTIONS_GROUP_PREFIX": names.actions_group_prefix,
                "ACTIONS_INSTANCE_ID": "local-1",
                "ACTIONS_PORT": str(ports.actions),
                "ACTIONS_SMTP_PORT": str(ports.smtp),
                **{
                    f"ACTIONS_{channel.upper()}_URL": f"http://127.0.0.1:{ports.providers}/{channel}"
                    for channel in ("sms", "push", "viber")
                },
            },
        ),
        ServiceSpec(
            "rules-api",
            ("services.rules", "api"),
            ready_url=_url(ports.rules_api),
            env={"RULES_API_PORT": str(ports.rules_api)},
        ),
        ServiceSpec(
            "rules",
            ("services.rules", "worker"),
            ready_url=_url(ports.rules),
            env={
                "RULES_APP_ID": names.rules_app_id,
                "RULES_INSTANCE_ID": "local-1",
                "RULES_WORKER_HTTP_PORT": str(ports.rules),
                "RULES_SESSION_TIMEOUT_S": "10",
            },
        ),
        ServiceSpec(
            "detector",
            ("services.detector", "worker"),
            ready_url=_url(ports.detector),
            env={
                "DETECTOR_APP_ID": names.detector_app_id,
                "DETECTOR_DATA_DIR": str(state_dir / "detector"),
                "DETECTOR_WORKER_PORT": str(ports.detector),
                "DETECTOR_SESSION_TIMEOUT_S": "10",
            },
        ),
        ServiceSpec(
            "readmodel",
            ("services.readmodel", "serve"),
            ready_url=_url(ports.readmodel),
            env={
                "READMODEL_GROUP": names.readmodel_group,
                "READMODEL_HTTP_PORT": str(ports.readmodel),
            },
        ),
        ServiceSpec(
            "collector",
            ("services.collector", "run", "--groups", str(groups_file)),
            ready_url=_url(ports.collector),
            env={
                "COLLECTOR_HTTP_PORT": str(ports.collector),
                "COLLECTOR_TRANSACTIONAL_ID_PREFIX": names.collector_transactional_prefix,
                # The simulator's demo credentials (they unlock nothing else).
                "COLLECTOR_VK_TOKEN": "sim-vk-group-token",
                "COLLECTOR_OK_APP_SECRET": "sim-ok-application-secret",
                "COLLECTOR_OK_TOKEN": "sim-ok-access-token",
            },
        ),
        ServiceSpec(
            "link",
            ("services.link", "serve"),
            ready_url=_url(ports.link),
            env={
                "LINK_HTTP_PORT": str(ports.link),
                # The identity providers the simulator plays (VK ID, OK OAuth, Apple).
                **identity_env(f"http://127.0.0.1:{ports.simulator}"),
            },
        ),
    ]
    specs = [w for spec in specs for w in _scaled(spec, counts.get(spec.name, 1), state_dir)]
    # Every service the lag monitor asks for readiness and metrics, each worker apart.
    http = {
        spec.name: urlsplit(spec.ready_url).port
        for spec in specs
        if spec.ready_url and spec.name not in ("simulator", "sinks")
    }
    specs.append(
        ServiceSpec(
            "lagmonitor",
            ("services.lagmonitor",),
            ready_url=_url(ports.lagmonitor, "/healthz"),
            env={
                "LAGMONITOR_PORT": str(ports.lagmonitor),
                "LAGMONITOR_GROUP_PREFIXES": names.lag_group_prefix,
                "LAGMONITOR_SERVICES": ",".join(
                    f"{name}=http://127.0.0.1:{port}" for name, port in http.items()
                ),
            },
        )
    )
    return [
        ServiceSpec(
            s.name,
            s.args,
            s.ready_url,
            {"TOPIC_PREFIX": prefix, **s.env, **kafka_login_env(s.login or s.name, kafka_logins)},
            login=s.login,
        )
        for s in specs
    ]

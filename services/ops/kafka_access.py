"""Kafka principals and ACLs, derived from the topic catalog.

Every service logs in to Kafka as its own SCRAM user and may do only what its part
of the data flow needs. :func:`plan` is a pure function from the catalog (each
topic's ``producers`` and ``consumers``) and the names the services run with
(:class:`SystemNames`: the topic prefix, consumer groups, transactional ids) to a
list of :class:`Grant`; a catalog role that maps to no principal is an error, so a
new topic or a new reader cannot be forgotten. :func:`apply` is the thin shell that
creates the SCRAM users and the ACLs with the admin client and removes ACLs of those
principals that the plan no longer has.

Resource patterns: catalog topics are LITERAL (a prefix ``social.events`` would also
cover ``social.events.private``); consumer groups and transactional ids are
PREFIXED with the stem the service derives them from (the stream runtime's
``<group>.<instance>``, the collector's ``<prefix>.<topic>.<network>.<group>``).
Principal names are ``<principal prefix><service>``, the prefix by default the app
stem plus a dot, so two systems (two test runs) on one broker never share a user.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.contracts.topics import TopicSettings, TopicSpec, catalog
from services.ops.system import ServiceNames, app_stem

SERVICES = (
    "collector",
    "link",
    "detector",
    "rules",
    "replay",
    "actions",
    "readmodel",
    "lagmonitor",
    "ops",
)
"""One principal each; ``ops`` is the
operator's dead-letter tooling (reads dead letters and outcomes, redrives)."""

ROLE_ALIASES = {"link-api": "link", "read model": "readmodel"}
"""Catalog roles named for what they do rather than for the process that does it."""

EXTERNAL_ROLES = frozenset({"other company services"})
"""Catalog readers outside this system: they get principals of their own, by hand."""

MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
DEADLETTER_CLI_GROUP = "social-loyalty.deadletters-cli."
"""services/actions/deadletters.py reads with ``<this><random>`` (assign, never commits)."""

REPLAY_GROUP_STEM = "social-loyalty.replay."
"""services/rules/replay.py: ``<topic prefix>social-loyalty.replay.<offer>.<time>``; its
transactional id is that group plus ``.replay``."""


class UnknownRoleError(ValueError):
    """A catalog topic names a producer or consumer that maps to no principal."""


class KafkaAccessSettings(BaseSettings):
    """``KAFKA_ACCESS_PRINCIPAL_PREFIX`` (default ``<app stem>.``) namespaces the users;
    ``KAFKA_ACCESS_PASSWORDS_FILE`` (default ``$SL_STACK_DIR/kafka-principals.json``)
    is where ``apply`` keeps the passwords it made."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_ACCESS_", extra="ignore", frozen=True)

    principal_prefix: str | None = Field(
        default=None, description="Prepended to every service's user name."
    )
    passwords_file: Path | None = Field(
        default=None, description="JSON {user: password}, mode 600."
    )

    def passwords_path(self) -> Path:
        if self.passwords_file is not None:
            return self.passwords_file
        root = Path(__file__).resolve().parents[2]
        stack = Path(os.environ.get("SL_STACK_DIR") or root / "deploy" / ".local")
        return stack / "kafka-principals.json"


@dataclass(frozen=True)
class SystemNames(ServiceNames):
    """The names the services run with (``ServiceNames``, as ``service_specs``
    configures them), their topics and the principals' prefix."""

    topics: TopicSettings
    principal_prefix: str

    @classmethod
    def for_prefix(cls, prefix: str, principal_prefix: str | None = None) -> SystemNames:
        stem = app_stem(prefix)
        return cls(
            stem=stem,
            topics=TopicSettings(prefix=prefix),
            principal_prefix=principal_prefix if principal_prefix is not None else f"{stem}.",
        )

    @property
    def replay_group_prefix(self) -> str:
        return self.topics.name(REPLAY_GROUP_STEM)

    def user(self, service: str) -> str:
        """The SCRAM user (and ``User:`` principal) of a service."""
        if service not in SERVICES:
            raise UnknownRoleError(f"no principal for service {service!r}")
        return f"{self.principal_prefix}{service}"

    def catalog(self) -> list[TopicSpec]:
        return catalog(
            self.topics, rules_app_id=self.rules_app_id, detector_app_id=self.detector_app_id
        )


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: ``User:<user>`` may ``operation`` on ``resource`` ``name``."""

    user: str
    resource: str  # topic | group | transactional_id
    name: str
    pattern: str  # literal | prefixed
    operation: str  # read | write | create | delete | describe | describe_configs
    why: str = field(default="", compare=False)

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


def service_of(role: str) -> str | None:
    """The principal's service for a catalog role (``actions.bonus`` is ``actions``),
    ``None`` for readers outside the system; an unknown role raises."""
    if role in EXTERNAL_ROLES:
        return None
    base = ROLE_ALIASES.get(role, role.split(".", maxsplit=1)[0])
    if base not in SERVICES:
        raise UnknownRoleError(
            f"catalog role {role!r} maps to no Kafka principal: add it to "
            "services/ops/kafka_access.py (SERVICES, ROLE_ALIASES or EXTERNAL_ROLES)"
        )
    return base


def _internal(spec: TopicSpec) -> bool:
    """A worker's own topic (a changelog, a repartition topic): it creates and checks it."""
    return len(spec.producers) == 1 and spec.producers == spec.consumers


def _redrive_target(spec: TopicSpec) -> bool:
    """Where the dead-letter redrive may write a letter back: a topic with one reader
    (services/actions/deadletters.py refuses shared logs) that is not a changelog, nor
    the dead-letter topic itself."""
    return (
        len(spec.consumers) == 1
        and spec.consumers != ("ops",)
        and spec.configs.get("cleanup.policy") == "delete"
    )


def plan(names: SystemNames, specs: Sequence[TopicSpec] | None = None) -> list[Grant]:
    """Every ACL the system needs, sorted; pure (no broker)."""
    specs = list(specs) if specs is not None else names.catalog()
    grants: set[Grant] = set()

    def grant(service: str, resource: str, name: str, pattern: str, op: str, why: str) -> None:  # noqa: PLR0917
        grants.add(Grant(names.user(service), resource, name, pattern, op, why))

    for spec in specs:
        for role in spec.producers:
            if (service := service_of(role)) is not None:
                grant(service, "topic", spec.name, "literal", "write", f"produces ({role})")
        for role in spec.consumers:
            if (service := service_of(role)) is not None:
                grant(service, "topic", spec.name, "literal", "read", f"consumes ({role})")
        if _internal(spec) and (owner := service_of(spec.producers[0])) is not None:
            for op in ("create", "describe_configs"):
                grant(owner, "topic", spec.name, "literal", op, "its internal topic")
        if _redrive_target(spec):
            grant("ops", "topic", spec.name, "literal", "write", "dead-letter redrive")
        grant("lagmonitor", "topic", spec.name, "literal", "describe", "end offsets, lag")

    # Faust's leader-election topic (not in the catalog: Faust makes it on start).
    leader = f"{names.detector_app_id}-__assignor-__leader"
    for op in ("create", "read", "write"):
        grant("detector", "topic", leader, "literal", op, "Faust's assignor leader topic")
    grant("detector", "group", names.detector_app_id, "literal", "read", "Faust app id")
    grant("rules", "group", names.rules_app_id, "prefixed", "read", "<app id>, .restore")
    grant("rules", "transactional_id", f"{names.rules_app_id}.", "prefixed", "write",
          "<app id>.<instance>")  # fmt: skip
    grant("replay", "group", names.replay_group_prefix, "prefixed", "read", "one per replay")
    grant("replay", "group", names.replay_group_prefix, "prefixed", "delete", "deleted at the end")
    grant("replay", "transactional_id", names.replay_group_prefix, "prefixed", "write",
          "<group>.replay")  # fmt: skip
    grant("actions", "group", f"{names.actions_group_prefix}.", "prefixed", "read",
          "<prefix>.bonus/.notify/.mailing/.counter")  # fmt: skip
    grant("readmodel", "group", names.readmodel_group, "literal", "read", "offsets in PostgreSQL")
    grant("collector", "transactional_id", f"{names.collector_transactional_prefix}.",
          "prefixed", "write", "one per collected group")  # fmt: skip
    grant("lagmonitor", "group", names.lag_group_prefix, "prefixed", "describe",
          "committed offsets of every group of the system")  # fmt: skip
    grant("ops", "group", DEADLETTER_CLI_GROUP, "prefixed", "read", "dead-letter listing")
    # A group commits offsets for every topic it reads, catalog or not (Faust's assignor
    # leader topic is committed by the detector's group, and Kafka's own tool lists it),
    # so the lag monitor needs each one's end offsets: Describe, the least ListOffsets
    # takes, never Read. Without it the monitor's principal showed the detector ERR
    # ("Topic authorization failed") while the CLI, run as admin, showed it OK.
    for read in [g for g in grants if g.resource == "topic" and g.operation == "read"]:
        grant("lagmonitor", "topic", read.name, read.pattern, "describe", "end offsets, lag")
    return sorted(grants)


def users(grants: Iterable[Grant]) -> list[str]:
    """The users a plan names, sorted."""
    return sorted({g.user for g in grants})


# ------------------------------------------------------------------ passwords


def new_password() -> str:
    return secrets.token_urlsafe(32)


def load_passwords(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.exists() else {}


def save_passwords(path: Path, passwords: Mapping[str, str]) -> None:
    """Write ``{user: password}`` readable by its owner alone (mode 600 from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(dict(sorted(passwords.items())), out, indent=1)
    path.chmod(0o600)


def passwords_for(
    wanted: Iterable[str], known: Mapping[str, str], rotate: Iterable[str] = ()
) -> dict[str, str]:
    """A password for every wanted user: the known one, or a new one when it has none
    or is being rotated."""
    again = set(rotate)
    return {
        user: known[user] if user in known and user not in again else new_password()
        for user in wanted
    }


# ------------------------------------------------------------------ admin (thin)


def _binding(grant: Grant) -> Any:
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBinding(
        ResourceType[grant.resource.upper()],
        grant.name,
        ResourcePatternType[grant.pattern.upper()],
        grant.principal,
        "*",
        AclOperation[grant.operation.upper()],
        AclPermissionType.ALLOW,
    )


def _key(binding: Any) -> tuple[str, str, str, str, str]:
    return (
        binding.restype.name,
        binding.name,
        binding.resource_pattern_type.name,
        binding.principal,
        binding.operation.name,
    )


def apply(
    admin: Any, grants: Sequence[Grant], passwords: Mapping[str, str], timeout: float = 30.0
) -> list[str]:
    """Upsert the SCRAM users in ``passwords``, create the plan's ACLs and delete the
    ACLs its principals have beyond the plan. Idempotent; returns what it did."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    done: list[str] = []
    if passwords:
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upserts = [
            UserScramCredentialUpsertion(user, info, password.encode())
            for user, password in sorted(passwords.items())
        ]
        for user, future in admin.alter_user_scram_credentials(
            upserts, request_timeout=timeout
        ).items():
            future.result(timeout)
            done.append(f"user {user}: {MECHANISM} credential set")
    wanted = {_key(b): b for b in map(_binding, grants)}
    existing: dict[tuple[str, str, str, str, str], Any] = {}
    for user in users(grants):
        found = admin.describe_acls(
            AclBindingFilter(
                ResourceType.ANY,
                None,  # type: ignore[arg-type]  # None matches any name (and host below)
                ResourcePatternType.ANY,
                f"User:{user}",
                None,  # type: ignore[arg-type]
                AclOperation.ANY,
                AclPermissionType.ANY,
            ),
            request_timeout=timeout,
        ).result(timeout)
        existing.update({_key(b): b for b in found})
    missing = [b for key, b in wanted.items() if key not in existing]
    if missing:
        for _created, future in admin.create_acls(missing, request_timeout=timeout).items():
            future.result(timeout)
        done.append(f"acls: {len(missing)} created")
    stale = [b for key, b in existing.items() if key not in wanted]
    if stale:
        filters = [
            AclBindingFilter(
                b.restype,
                b.name,
                b.resource_pattern_type,
                b.principal,
                b.host,
                b.operation,
                b.permission_type,
            )
            for b in stale
        ]
        for _filter, future in admin.delete_acls(filters, request_timeout=timeout).items():
            future.result(timeout)
        done.append(f"acls: {len(stale)} no longer in the plan deleted")
    if not missing and not stale:
        done.append(f"acls: {len(wanted)} in place, nothing to change")
    return done


def revoke(admin: Any, users_: Sequence[str], timeout: float = 30.0) -> list[str]:
    """Delete these users' SCRAM credentials and every ACL naming them."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
        ScramMechanism,
        UserScramCredentialDeletion,
    )

    done: list[str] = []
    filters = [
        AclBindingFilter(
            ResourceType.ANY,
            None,  # type: ignore[arg-type]  # None matches any name (and host below)
            ResourcePatternType.ANY,
            f"User:{user}",
            None,  # type: ignore[arg-type]
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        for user in users_
    ]
    if filters:
        for _filter, future in admin.delete_acls(filters, request_timeout=timeout).items():
            done.append(f"acls: {len(future.result(timeout))} deleted")
    deletions = [UserScramCredentialDeletion(u, ScramMechanism.SCRAM_SHA_512) for u in users_]
    if deletions:
        futures = admin.alter_user_scram_credentials(deletions, request_timeout=timeout)
        for user, future in futures.items():
            try:
                future.result(timeout)
                done.append(f"user {user}: deleted")
            except Exception as exc:  # a user that never had a credential
                if "RESOURCE_NOT_FOUND" not in str(exc):
                    raise
    return done


def provision(
    admin: Any,
    names: SystemNames,
    *,
    passwords_file: Path | None = None,
    rotate: Iterable[str] = (),
    given: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[dict[str, str], list[str]]:
    """Users, passwords and ACLs for the whole system; returns ``{service: password}``
    and what was done. With ``passwords_file`` the passwords it holds are kept (and
    new ones written back); without, every user gets a fresh password. ``given``
    (service -> password, e.g. from a secret store) wins over both."""
    grants = plan(names)
    known = load_passwords(passwords_file) if passwords_file else {}
    known |= {names.user(service): password for service, password in (given or {}).items()}
    rotate_users = {names.user(s) if s in SERVICES else s for s in rotate}
    passwords = passwords_for((names.user(s) for s in SERVICES), known, rotate_users)
    if passwords_file:
        save_passwords(passwords_file, {**known, **passwords})
    done = apply(admin, grants, passwords, timeout=timeout)
    return {service: passwords[names.user(service)] for service in SERVICES}, done


def passwords_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``KAFKA_ACCESS_PASSWORD_<SERVICE>`` variables (the compose file's way to hand in
    passwords from its ``.env``), as ``{service: password}``."""
    environ = os.environ if environ is None else environ
    return {
        service: environ[f"KAFKA_ACCESS_PASSWORD_{service.upper()}"]
        for service in SERVICES
        if environ.get(f"KAFKA_ACCESS_PASSWORD_{service.upper()}")
    }


def system_logins(
    settings: Any, prefix: str, *, passwords_file: Path | None = None
) -> dict[str, tuple[str, str]] | None:
    """Provision the system's principals with the admin login in ``settings`` (a
    ``KafkaSettings``) and return ``{service: (user, password)}`` for
    ``service_specs(kafka_logins=...)``; ``None`` on a cluster without SCRAM logins
    (PLAINTEXT, no ACLs to apply), where every service uses the environment's login."""
    from services.runtime import kafka

    if not (settings.sasl_mechanism or "").startswith("SCRAM"):
        return None
    names = SystemNames.for_prefix(prefix, KafkaAccessSettings().principal_prefix)
    passwords, _done = provision(
        kafka.admin(settings, "kafka-access"), names, passwords_file=passwords_file
    )
    return {service: (names.user(service), password) for service, password in passwords.items()}

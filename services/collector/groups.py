"""The groups file: which groups to collect, how often, with which credentials.

A YAML file validated by pydantic (example: ``deploy/groups.example.yaml``).
Credentials are given by the *name* of the environment variable that holds them,
so the file can live in the repository and a leaked file leaks no token.
``bucket_count`` is fixed per group: the detector keeps its state per bucket, and
changing it moves members between buckets (the collector re-baselines the group
when it sees a change, which loses the events of one interval).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from services.collector.api import OkClientSettings, RetrySettings, VkClientSettings, Window

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_BUCKET_COUNT = 16


class GroupsFileError(ValueError):
    """The groups file is missing, not YAML, or not valid; the message says where."""


class MissingCredentialError(RuntimeError):
    """An environment variable the groups file names is not set."""


def _env_name(value: str) -> str:
    if not ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


EnvName = Annotated[str, Field(description="Name of an environment variable.")]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PostWindow(_Strict):
    """Which posts a run reads: the last ``last_posts``, those of the last ``days``, or both."""

    last_posts: int | None = Field(default=None, ge=1, le=1000)
    days: float | None = Field(default=None, gt=0, le=365)

    @model_validator(mode="after")
    def _one_bound(self) -> PostWindow:
        if self.last_posts is None and self.days is None:
            raise ValueError("give last_posts, days or both")
        return self

    def to_window(self) -> Window:
        return Window(last_posts=self.last_posts, days=self.days)


class VkCredentials(_Strict):
    access_token_env: EnvName
    token_kind: Literal["user", "group"] = "user"  # noqa: S105 -- a kind, not a secret

    _check = field_validator("access_token_env")(_env_name)


class OkCredentials(_Strict):
    application_key: str | None = Field(default=None, description="Public key; may be inline.")
    application_key_env: EnvName | None = None
    application_secret_key_env: EnvName
    access_token_env: EnvName

    _check = field_validator(
        "application_key_env", "application_secret_key_env", "access_token_env"
    )(lambda v: v if v is None else _env_name(v))

    @model_validator(mode="after")
    def _one_key(self) -> OkCredentials:
        if (self.application_key is None) == (self.application_key_env is None):
            raise ValueError("give exactly one of application_key and application_key_env")
        return self


class GroupConfig(_Strict):
    """One group to collect."""

    network: Literal["vk", "ok"]
    group_id: int = Field(gt=0)
    credentials: VkCredentials | OkCredentials
    base_url: str | None = Field(default=None, description="API base URL; the real API if unset.")
    interval_s: float = Field(default=300.0, ge=1)
    jitter_s: float = Field(default=0.0, ge=0, description="Up to this much is added at random.")
    window: PostWindow = Field(default_factory=lambda: PostWindow(last_posts=100))
    bucket_count: int = Field(default=DEFAULT_BUCKET_COUNT, ge=1, le=4096)
    requests_per_second: int | None = Field(default=None, ge=1)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    allow_mass_leave: bool = Field(
        default=False,
        description="Publish a run even if the member count fell by more than "
        "COLLECTOR_MAX_MEMBER_DROP since the last succeeded run (a real mass leave).",
    )

    @model_validator(mode="after")
    def _credentials_fit_network(self) -> GroupConfig:
        wanted = VkCredentials if self.network == "vk" else OkCredentials
        if not isinstance(self.credentials, wanted):
            raise ValueError(
                f"credentials for {self.network} need {sorted(wanted.model_fields)} "
                f"(got {type(self.credentials).__name__})"
            )
        return self

    @property
    def name(self) -> str:
        """``network:group_id``, how operators and the CLI name a group."""
        return f"{self.network}:{self.group_id}"

    def client_settings(self, environ: Mapping[str, str]) -> VkClientSettings | OkClientSettings:
        """The API client's settings, with secrets read from ``environ`` now (not at load)."""

        def secret(var: str) -> str:
            value = environ.get(var)
            if not value:
                raise MissingCredentialError(
                    f"group {self.name}: environment variable {var} is not set "
                    "(the groups file names it as a credential)"
                )
            return value

        extra: dict[str, object] = {"retry": self.retry}
        if self.base_url:
            extra["base_url"] = self.base_url
        creds = self.credentials
        if isinstance(creds, VkCredentials):
            if self.requests_per_second:
                extra["requests_per_second"] = self.requests_per_second
            return VkClientSettings(
                access_token=SecretStr(secret(creds.access_token_env)),
                token_kind=creds.token_kind,
                **extra,
            )
        if self.requests_per_second:
            extra["requests_per_second"] = self.requests_per_second
        key = creds.application_key or secret(creds.application_key_env or "")
        return OkClientSettings(
            application_key=key,
            application_secret_key=SecretStr(secret(creds.application_secret_key_env)),
            access_token=SecretStr(secret(creds.access_token_env)),
            **extra,
        )


class GroupsFile(_Strict):
    groups: tuple[GroupConfig, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> GroupsFile:
        seen: set[str] = set()
        for group in self.groups:
            if group.name in seen:
                raise ValueError(f"group {group.name} is listed twice")
            seen.add(group.name)
        return self

    def find(self, name: str) -> GroupConfig:
        """The group named ``network:group_id``."""
        for group in self.groups:
            if group.name == name:
                return group
        known = ", ".join(group.name for group in self.groups)
        raise KeyError(f"no group {name} in the groups file (it has: {known})")


def parse_groups(text: str, source: str = "<groups>") -> GroupsFile:
    """Validate a groups document; errors name the field, e.g. ``groups.0.window``."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GroupsFileError(f"{source}: not valid YAML ({exc})") from exc
    try:
        return GroupsFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise GroupsFileError(f"{source}: {problems}") from exc


def load_groups(path: Path) -> GroupsFile:
    try:
        text = path.read_text()
    except OSError as exc:
        raise GroupsFileError(f"cannot read groups file {path}: {exc.strerror}") from exc
    return parse_groups(text, str(path))

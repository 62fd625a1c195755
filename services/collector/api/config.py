"""Settings blocks for the VK and OK clients.

Plain frozen pydantic models, not ``BaseSettings``: the collector's own settings
class nests them (``COLLECTOR_VK__ACCESS_TOKEN=...``), so there is still one
settings class per service and nothing is read from the environment at import.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

USER_TOKEN_RPS = 3
GROUP_TOKEN_RPS = 20


class RetrySettings(BaseModel):
    """How long a transient error (rate limit, 5xx, network) is retried."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=6, ge=1, description="Tries per request, the first included.")
    backoff_base_s: float = Field(default=0.5, ge=0, description="First retry waits up to this.")
    backoff_cap_s: float = Field(default=16.0, ge=0, description="No single wait is longer.")


class VkClientSettings(BaseModel):
    """One VK access token and how to use it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    access_token: SecretStr
    token_kind: Literal["user", "group"] = Field(
        default="user", description="VK allows 3 req/s with a user token, 20 with a group token."
    )
    base_url: str = Field(
        default="https://api.vk.com/method/", description="Point it at the simulator in tests."
    )
    api_version: str = "5.199"
    requests_per_second: int | None = Field(
        default=None, ge=1, description="Overrides the limit implied by token_kind."
    )
    rate_margin_s: float = Field(
        default=0.05,
        ge=0,
        description="Widens the 1 s window against jitter in transit (requests are clocked as "
        "they leave).",
    )
    timeout_s: float = Field(default=30.0, gt=0)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    use_execute: bool = Field(default=True, description="Batch up to 25 calls per request.")
    consistency_attempts: int = Field(
        default=3, ge=1, description="Re-reads of a list that changed while it was paged."
    )
    strict_member_count: bool = Field(
        default=True,
        description="Demand exactly `count` member ids; turn off if VK's count drifts for a group.",
    )
    thread_items_count: int = Field(default=10, ge=0, le=10)

    @property
    def rate(self) -> int:
        if self.requests_per_second is not None:
            return self.requests_per_second
        if self.token_kind == "group":  # noqa: S105 -- a kind of token, not a secret
            return GROUP_TOKEN_RPS
        return USER_TOKEN_RPS


class OkClientSettings(BaseModel):
    """One OK application and user session."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    application_key: str = Field(description="The application's public key.")
    application_secret_key: SecretStr
    access_token: SecretStr
    base_url: str = Field(default="https://api.ok.ru/", description="`fb.do` is appended.")
    requests_per_second: int = Field(default=5, ge=1)
    rate_margin_s: float = Field(default=0.05, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    consistency_attempts: int = Field(
        default=3, ge=1, description="Reads of a member list that disagrees with the group's count."
    )
    strict_member_count: bool = Field(
        default=True,
        description="Demand as many member ids as group.getCounters reports; turn off only if "
        "OK's counter drifts for a group (the run's member-drop guard still applies).",
    )
    members_page_size: int = Field(default=1000, ge=1, le=1000)
    topics_page_size: int = Field(default=100, ge=1, le=100)
    likes_page_size: int = Field(default=100, ge=1, le=100)
    comments_page_size: int = Field(default=100, ge=1, le=100)

"""Simulator settings: where it listens and which (fake) credentials it accepts.

The defaults are the demo's credentials; they unlock nothing but this process.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIMULATOR_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    vk_user_token: SecretStr = SecretStr("sim-vk-user-token")
    vk_group_token: SecretStr = SecretStr("sim-vk-group-token")
    vk_user_rps: int = Field(default=3, ge=0, description="0: unlimited.")
    vk_group_rps: int = Field(default=20, ge=0)
    ok_application_key: str = "SIMOKAPPKEY"
    ok_application_id: str = Field(
        default="512000000001", description="The OK application id (OAuth client_id)."
    )
    ok_application_secret_key: SecretStr = SecretStr("sim-ok-application-secret")
    ok_access_token: SecretStr = SecretStr("sim-ok-access-token")
    ok_rps: int = Field(default=0, ge=0, description="0: unlimited.")
    seed_demo: bool = Field(default=False, description="Start with the demo groups.")
    seed: int = Field(default=7, description="Random seed of the demo world.")

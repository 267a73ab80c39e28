"""Configuration by environment (prefix PENPAY_), read once by the entrypoints."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PENPAY_", env_file=".env", extra="ignore")

    app_env: Literal["development", "testing", "production"] = "development"

    # Persistence: SQLite is the embedded default; MariaDB looks like
    # mysql+aiomysql://user:pass@127.0.0.1:3306/penpay
    database_url: str = "sqlite+aiosqlite:///./penpay.db"
    # No Redis URL means the in-process bus and in-process rate limiting.
    redis_url: str | None = None

    grpc_addr: str = "127.0.0.1:50051"
    http_addr: str = "127.0.0.1:8080"
    gateway_addr: str = "127.0.0.1:50052"
    metrics_addr: str = "127.0.0.1:9100"

    # Deriv
    deriv_ws_url: str = "ws://127.0.0.1:8765/websockets/v3"
    deriv_app_id: str = "1089"
    deriv_agent_token: SecretStr = SecretStr("")

    # Deriv gateway: leader lease (Redis SET NX PX with a fencing token) and call timeouts
    gateway_lease_key: str = "penpay:deriv-gateway:leader"
    gateway_lease_ttl: float = 5.0
    gateway_lease_retry: float = 0.5
    gateway_request_timeout: float = 20.0
    # How old a journal row in SENDING must be before "not in the statement" means "never executed".
    gateway_unknown_settle: float = 30.0

    # M-Pesa (Daraja)
    mpesa_base_url: str = "http://127.0.0.1:8766"
    mpesa_consumer_key: SecretStr = SecretStr("")
    mpesa_consumer_secret: SecretStr = SecretStr("")
    mpesa_shortcode: str = "174379"
    mpesa_passkey: SecretStr = SecretStr("")
    mpesa_initiator_name: str = "testapi"
    mpesa_initiator_password: SecretStr = SecretStr("")
    mpesa_cert_file: str | None = None
    mpesa_callback_base_url: str = "http://127.0.0.1:8767"
    mpesa_callback_secret: SecretStr = SecretStr("")
    mpesa_allowed_ips: str = "127.0.0.1"

    @field_validator("redis_url", "mpesa_cert_file", mode="before")
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        # `PENPAY_REDIS_URL=` (as in .env.example) means "not configured", not "".
        return None if value == "" else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

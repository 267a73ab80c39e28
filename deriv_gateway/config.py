"""Gateway configuration: environment (penpay.settings) plus gateway-specific knobs with defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# (direction, frame) for every frame on the agent and client connections: "send" or "recv".
FrameObserver = Callable[[str, dict[str, Any]], None]


@dataclass
class GatewayConfig:
    ws_url: str = "ws://127.0.0.1:8765/websockets/v3"
    app_id: str = "1089"
    agent_token: str = field(default="", repr=False)
    grpc_addr: str = "127.0.0.1:50052"
    redis_url: str | None = None
    database_url: str = "sqlite+aiosqlite:///./penpay.db"

    # Connection
    request_timeout: float = 20.0
    ping_interval: float = 30.0
    pong_timeout: float = 5.0
    connect_timeout: float = 10.0
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    compression: bool = True
    # share of website_status.api_call_limits PenPay allows itself
    rate_limit_safety: float = 0.9
    rate_limit_enabled: bool = True

    # Lease (Redis SET NX PX + INCR fencing token)
    lease_key: str = "penpay:deriv-gateway:leader"
    lease_ttl: float = 5.0
    # renew every ttl/3; a standby retries every `lease_retry` seconds, so a takeover after the
    # leader dies happens within lease_ttl + lease_retry.
    lease_retry: float = 0.5

    # Idempotency: statement lookback (s) before the journal row was created, and how long a
    # SENDING row must be old before "not in the statement" is taken to mean "never executed".
    statement_lookback: float = 300.0
    unknown_settle: float = 30.0
    reference_prefix: str = "PenPay"

    # Client-token (short-lived) connections
    client_timeout: float = 20.0

    frame_observer: FrameObserver | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_settings(cls, **overrides: Any) -> GatewayConfig:
        from penpay.production import Part, refuse_development_values
        from penpay.settings import get_settings

        settings = get_settings()
        # What the process will use: the settings with the command line's overrides applied.
        names = {"ws_url": "deriv_ws_url", "database_url": "database_url"}
        used = {names[key]: value for key, value in overrides.items() if key in names}
        refuse_development_values(settings.model_copy(update=used), Part.DERIV, Part.DATABASE)
        config = cls(
            ws_url=settings.deriv_ws_url,
            app_id=settings.deriv_app_id,
            agent_token=settings.deriv_agent_token.get_secret_value(),
            grpc_addr=settings.gateway_addr,
            redis_url=settings.redis_url,
            database_url=settings.database_url,
            lease_key=settings.gateway_lease_key,
            lease_ttl=settings.gateway_lease_ttl,
            lease_retry=settings.gateway_lease_retry,
            request_timeout=settings.gateway_request_timeout,
            unknown_settle=settings.gateway_unknown_settle,
        )
        for key, value in overrides.items():
            setattr(config, key, value)
        return config

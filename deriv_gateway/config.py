"""Gateway configuration: environment (penpay.settings) plus gateway-specific knobs with defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
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

    # The payment agent's per-transfer range in USD cents (PENPAY_DERIV_TRANSFER_MIN_USD / _MAX_USD):
    # a transfer or withdrawal outside it is refused before anything is journaled or sent.
    transfer_min_cents: int = 10_00
    transfer_max_cents: int = 2_000_00

    # Client-token (short-lived) connections
    client_timeout: float = 20.0

    frame_observer: FrameObserver | None = field(default=None, repr=False, compare=False)

    # Deriv's REST Payment-Agent API (the transport for new-API accounts); empty: not configured
    rest_base_url: str = ""
    rest_app_id: str = ""
    rest_agent_token: str = field(default="", repr=False)
    rest_per_minute: int = 60
    rest_poll_interval: float = 2.0  # how often a pending transfer or withdrawal is looked at
    rest_balance_poll: float = 10.0  # WatchBalance: 6 of the token's 60 requests a minute

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
            rest_base_url=settings.deriv_rest_base_url,
            rest_app_id=settings.deriv_rest_app_id,
            rest_agent_token=settings.deriv_rest_agent_token.get_secret_value(),
            rest_per_minute=settings.deriv_rest_per_minute,
            transfer_min_cents=usd_cents(settings.deriv_transfer_min_usd),
            transfer_max_cents=usd_cents(settings.deriv_transfer_max_usd),
        )
        for key, value in overrides.items():
            setattr(config, key, value)
        return config


def usd_cents(amount: Decimal) -> int:
    """A USD setting (an exact decimal of at most 2 places) in cents."""
    return int(amount.scaleb(2))

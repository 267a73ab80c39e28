"""Gateway configuration: what the daemon is built from, with defaults (the composition root fills
it from the settings: penpay/wiring/gateway.py)."""

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


def usd_cents(amount: Decimal) -> int:
    """A USD setting (an exact decimal of at most 2 places) in cents."""
    return int(amount.scaleb(2))

"""Simulator configuration (all knobs with Deriv's 2024 defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RateLimitConfig:
    """Sliding windows, sized as `website_status.api_call_limits` reports them.

    Keys: the authorized loginid (shared by all its connections), else the connection.
    `ping`/`time` have their own per-connection 10/s limit; exceeding it closes the socket (1008).
    """

    enabled: bool = True
    general_minutely: int = 180
    general_hourly: int = 14400
    # statement (and Deriv's portfolio/profit_table) count as "outcome" calls
    outcome_minutely: int = 25
    outcome_hourly: int = 1500
    pricing_minutely: int = 80  # reported only: the simulator has no pricing calls
    pricing_hourly: int = 3600
    max_proposal_subscription: int = 5  # reported only
    ping_per_second: int = 10

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RateLimitConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    # None: no control API. 0: any free port.
    control_port: int | None = None
    seed: int = 0
    # JSON file with {"accounts": [...], "tokens": [...]}; None: the built-in default set
    accounts_file: Path | None = None
    accounts: dict[str, Any] | None = None  # same shape as the file, in-process
    # permessage-deflate, as Deriv offers it. Off saves ~15-20% CPU on small frames.
    compression: bool = True
    # a reply not ready after this many seconds is replaced by the Timeout error
    request_timeout: float = 15.0
    # a socket with no inbound traffic for this long is dropped
    idle_timeout: float = 120.0
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    # fault rules applied from the start (see faults.FaultRule.from_dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    verification_code_ttl: int = 3600
    # empty: any app_id matching ^(?!0)[0-9]{1,19}$ is accepted
    allowed_app_ids: frozenset[str] = frozenset()
    max_message_bytes: int = 1 << 20
    # the first transaction id; None: derived from the seed and the start time (books.first_transaction_id)
    transaction_id_start: int | None = None

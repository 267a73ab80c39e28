"""Configuration of the Daraja simulator. Defaults are Safaricom's public sandbox test data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

SANDBOX_SHORTCODE = "174379"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"
SANDBOX_B2C_SHORTCODE = "600992"
SANDBOX_INITIATOR = "testapi"
DEFAULT_INITIATOR_PASSWORD = "Safaricom999!*!"
DEFAULT_KEY_SEED = "penpay-daraja-simulator-v1"
SANDBOX_PHONE = "254708374149"


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8766
    seed: int | str = 0
    # Wall clock for ids and timestamps (EAT). Fix it to make ids byte-identical across runs.
    clock: Callable[[], datetime] | None = None

    # Credentials. consumer_key/secret None: any non-empty Basic pair is accepted.
    consumer_key: str | None = None
    consumer_secret: str | None = None
    token_ttl: int = 3600
    # Lipa na M-Pesa shortcodes and their passkeys; tills maps a store number to its till numbers
    # (CustomerBuyGoodsOnline PartyB). A store absent from tills accepts any numeric PartyB.
    shortcodes: dict[str, str] = field(default_factory=lambda: {SANDBOX_SHORTCODE: SANDBOX_PASSKEY})
    tills: dict[str, list[str]] = field(default_factory=dict)
    # The organisation's B2C ("one account") shortcodes: PartyA of B2C, Transaction Status and Account
    # Balance. Any other PartyA is the initiator acting for an account it has no rights on: ResultCode 21.
    b2c_shortcodes: list[str] = field(default_factory=lambda: [SANDBOX_B2C_SHORTCODE])
    initiator_name: str = SANDBOX_INITIATOR
    initiator_password: str = DEFAULT_INITIATOR_PASSWORD
    # The RSA key behind the SecurityCredential certificate is derived from key_seed (not from seed), so a
    # certificate configured once keeps working across runs with other seeds. key_file: a PEM private key.
    key_seed: str = DEFAULT_KEY_SEED
    key_file: str | None = None

    # Timing (seconds). callback_delay: from acceptance to completion (money moves, callback is sent).
    callback_delay: float = 2.0
    late_delay: float = 30.0  # extra delay of a "late" callback; also the hold limit of "out_of_order"
    duplicate_gap: float = 0.2  # between copies of a duplicated callback
    callback_timeout: float = 10.0
    callback_retries: int = 0  # the portal says M-Pesa does not retry callbacks

    # Outcome draw when neither a control override nor a phone rule decides: {"0": 0.9, "1032": 0.1}.
    stk_outcomes: dict[str, float] = field(default_factory=lambda: {"0": 1.0})
    b2c_outcomes: dict[str, float] = field(default_factory=lambda: {"0": 1.0})
    phone_rules: bool = True

    # Business rules.
    subscriber_lock: bool = True  # a second push to a phone with a pending push gets 500.001.1001
    repeat_rule_seconds: float = 0.0  # >0: same amount, same phone within this window -> ResultCode 17
    daily_limit: int = 500_000
    stk_limits_sync: bool = True  # STK amount outside 1..250000: sync 400.002.02 (else async 2/3)
    b2c_limits_sync: bool = False  # B2C amount outside 10..250000: async 2/3 (else sync 400.002.02)
    utility_balance: int = 10_000_000  # B2C pays from it; STK collections land in it
    working_balance: int = 1_000_000

    # Wire-shape choices where the sources disagree (daraja-protocol.md).
    invalid_token_style: Literal["uniform", "per_api"] = "uniform"
    ban_url_keywords: bool = False  # reject CallBackURL/ResultURL containing mpesa/safaricom/exe/...
    mask_phone_numbers: bool = False  # STK PhoneNumber as "0722000***" (the 2026 masking report)
    # C2B (paybill): the MSISDN in validation and confirmation bodies ("masked": 0722***000, or "full"),
    # and whether M-Pesa asks the ValidationURL before completing (an option Safaricom enables per shortcode).
    c2b_msisdn: Literal["masked", "full"] = "masked"
    c2b_external_validation: bool = True
    queue_timeout_result_code: int = 100000000
    status_not_found_result_code: int = 25
    spike_arrest_rps: float | None = None  # per API; None: only injected spike arrests

    def updated(self, changes: dict[str, Any]) -> list[str]:
        """Apply runtime-tunable fields (control API); returns the names changed."""
        allowed = {f.name for f in fields(self)} - {"host", "port", "clock", "key_seed", "key_file"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown or read-only config fields: {sorted(unknown)}")
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            current = getattr(self, name)
            if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if current is not None and value is not None and type(value) is not type(current):
                raise ValueError(f"{name} must be a {type(current).__name__}")
            checked[name] = value
        for name, value in checked.items():
            setattr(self, name, value)
        return sorted(checked)

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in {"clock"}:
                continue
            out[f.name] = getattr(self, f.name)
        return out

"""Callback URL paths. No "mpesa"/"safaricom"/"query"/... in them (daraja-protocol.md 10.4)."""

from __future__ import annotations

from enum import StrEnum


class CallbackKind(StrEnum):
    STK = "stk"
    B2C_RESULT = "b2c_result"
    B2C_TIMEOUT = "b2c_timeout"
    STATUS_RESULT = "status_result"
    STATUS_TIMEOUT = "status_timeout"
    BALANCE_RESULT = "balance_result"
    BALANCE_TIMEOUT = "balance_timeout"
    C2B_VALIDATION = "c2b_validation"  # paybill: may this payment be taken? (answered synchronously)
    C2B_CONFIRMATION = "c2b_confirmation"  # paybill: the payment was taken
    REVERSAL_RESULT = "reversal_result"  # a suspense refund's Reversal: its Result
    REVERSAL_TIMEOUT = "reversal_timeout"  # ... its queue timeout
    REVERSAL_STATUS = "reversal_status"  # Transaction Status about a reversal of ours


PATHS: dict[CallbackKind, str] = {
    CallbackKind.STK: "/payments/stk",
    CallbackKind.B2C_RESULT: "/payments/b2c/result",
    CallbackKind.B2C_TIMEOUT: "/payments/b2c/timeout",
    CallbackKind.STATUS_RESULT: "/payments/status/result",
    CallbackKind.STATUS_TIMEOUT: "/payments/status/timeout",
    CallbackKind.BALANCE_RESULT: "/payments/balance/result",
    CallbackKind.BALANCE_TIMEOUT: "/payments/balance/timeout",
    CallbackKind.C2B_VALIDATION: "/payments/paybill/validate",
    CallbackKind.C2B_CONFIRMATION: "/payments/paybill/confirm",
    CallbackKind.REVERSAL_RESULT: "/payments/paybill/refund/result",
    CallbackKind.REVERSAL_TIMEOUT: "/payments/paybill/refund/timeout",
    CallbackKind.REVERSAL_STATUS: "/payments/paybill/refund/status",
}


def callback_url(base_url: str, kind: CallbackKind, secret: str) -> str:
    """The URL handed to Daraja: base + path + the secret path token."""
    if not secret:
        raise ValueError("a callback secret is required (PENPAY_MPESA_CALLBACK_SECRET)")
    return f"{base_url.rstrip('/')}{PATHS[kind]}/{secret}"

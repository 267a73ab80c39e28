"""Typed Deriv errors, decoded from the `{"error": {"code", "message", "details"?}}` envelope.

The classes say what a caller may conclude about the request:
- `NotExecuted`: rejected before dispatch (rate limit, schema, auth, scopes): nothing happened,
  a retry is safe.
- `OutcomeUnknown`: the request may or may not have run (server Timeout, backend failure, socket
  lost after the send).
- everything else: Deriv answered with a definite refusal.
"""

from __future__ import annotations

from typing import Any


class DerivError(Exception):
    """A Deriv error reply (or a client-side failure with a Deriv-like code)."""

    code: str = "DerivError"

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        msg_type: str | None = None,
        req_id: int | None = None,
    ) -> None:
        super().__init__(message or self.code)
        if code is not None:
            self.code = code
        self.message = message or self.code
        self.details = details or {}
        self.msg_type = msg_type
        self.req_id = req_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NotExecuted(DerivError):
    """Refused before the call reached the backend: nothing was executed."""


class OutcomeUnknown(DerivError):
    """The call may have been executed: never repeat a money call without checking the statement."""


class RateLimit(NotExecuted):
    code = "RateLimit"


class InputValidationFailed(NotExecuted):
    code = "InputValidationFailed"


class SanityCheckFailed(NotExecuted):
    code = "SanityCheckFailed"


class AuthorizationRequired(NotExecuted):
    code = "AuthorizationRequired"


class PermissionDenied(DerivError):
    code = "PermissionDenied"


class InvalidToken(DerivError):
    code = "InvalidToken"


class AccountDisabled(DerivError):
    code = "AccountDisabled"


class BadSession(DerivError):
    code = "BadSession"


class PaymentAgentTransferError(DerivError):
    code = "PaymentAgentTransferError"


class PaymentAgentWithdrawError(DerivError):
    code = "PaymentAgentWithdrawError"


class ServiceUnavailable(NotExecuted):
    code = "ServiceUnavailable"


class ServerTimeout(OutcomeUnknown):
    """Deriv's own 15 s per-request timeout: the backend may still complete the call."""

    code = "Timeout"


class BackendError(OutcomeUnknown):
    code = "CallError"


# --- client-side conditions (no frame from Deriv) ----------------------------------------


class RequestTimeout(OutcomeUnknown):
    """No reply within the gateway's per-request timeout."""

    code = "ClientTimeout"


class ConnectionLost(OutcomeUnknown):
    """The socket went away while the request was outstanding (it had been written)."""

    code = "ConnectionLost"


class NotConnected(NotExecuted):
    """No usable connection; the frame never left."""

    code = "NotConnected"


class NotLeader(NotExecuted):
    """This gateway does not hold the lease: it does not send."""

    code = "NotLeader"


class UnexpectedReply(OutcomeUnknown):
    code = "UnexpectedReply"


class ForeignAnswer(OutcomeUnknown):
    """An answer that names another operation than ours (its echo_req, reference or transaction id):
    it proves nothing about ours, neither executed nor not executed."""

    code = "ForeignAnswer"


_BY_CODE: dict[str, type[DerivError]] = {
    "RateLimit": RateLimit,
    "RateLimitExceeded": RateLimit,
    "InputValidationFailed": InputValidationFailed,
    "SanityCheckFailed": SanityCheckFailed,
    "BadRequest": InputValidationFailed,
    "UnrecognisedRequest": InputValidationFailed,
    "AuthorizationRequired": AuthorizationRequired,
    "PermissionDenied": PermissionDenied,
    "InvalidToken": InvalidToken,
    "AccountDisabled": AccountDisabled,
    "BadSession": BadSession,
    "PaymentAgentTransferError": PaymentAgentTransferError,
    "PaymentAgentWithdrawError": PaymentAgentWithdrawError,
    "ServiceUnavailable": ServiceUnavailable,
    "Timeout": ServerTimeout,
    "WrongResponse": BackendError,
    "CallError": BackendError,
    "InternalServerError": BackendError,
}


def decode_error(message: dict[str, Any]) -> DerivError:
    """The typed error for a reply carrying `error` (unknown codes give a plain DerivError)."""
    error = message.get("error") or {}
    code = str(error.get("code") or "UnknownError")
    details = error.get("details")
    cls = _BY_CODE.get(code, DerivError)
    return cls(
        str(error.get("message") or code),
        code=code,
        details=details if isinstance(details, dict) else None,
        msg_type=message.get("msg_type"),
        req_id=message.get("req_id") if isinstance(message.get("req_id"), int) else None,
    )

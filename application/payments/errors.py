"""Errors of the payments use cases and of the ports they call.

The ports (M-Pesa, Deriv) classify every failure of an external call into one of three
kinds, because the saga's next move depends only on that: refused (nothing moved, and it
will not move), unavailable (nothing moved yet; ask again later with the same id) and
outcome unknown (it may have moved; resolve before anything else).
"""

from __future__ import annotations

import math

# One error for "bind your Deriv account first", shared with identity (re-exported).
from application.identity.errors import DerivAccountNotBound as DerivAccountNotBound
from domain.shared.errors import DomainError


class PaymentsError(DomainError):
    reason = "PAYMENTS_ERROR"


class TransactionNotFound(PaymentsError):
    reason = "TRANSACTION_NOT_FOUND"


class NotAwaitingCode(PaymentsError):
    """ConfirmWithdrawal on a transaction that is not waiting for its code."""

    reason = "WITHDRAWAL_NOT_AWAITING_CODE"


class VerificationCodeRejected(PaymentsError):
    reason = "VERIFICATION_CODE_REJECTED"


class PaymentRefused(PaymentsError):
    """A money call was refused at initiation (e.g. M-Pesa refused the STK push)."""

    reason = "PAYMENT_REFUSED"


class FloatInsufficient(PaymentsError):
    """The float that must pay this payment out cannot cover it now: refused before anything was
    written or charged; the same request succeeds once the float is funded."""

    reason = "FLOAT_INSUFFICIENT"

    def __init__(self, message: str, *, float_kind: str) -> None:
        super().__init__(message)
        self.rule = float_kind  # ErrorInfo metadata "rule": which float (DERIV_AGENT_FLOAT, MPESA_FLOAT)


class ServiceUnavailable(PaymentsError):
    reason = "UPSTREAM_UNAVAILABLE"


class DerivBusy(ServiceUnavailable):
    """The call was held back unsent (a rate limit, ours or Deriv's; the gateway unreachable):
    nothing changed; ask again, with the same input, after `retry_after_seconds` (RetryInfo,
    HTTP Retry-After)."""

    reason = "DERIV_BUSY"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = max(1, int(retry_after_seconds))

    @classmethod
    def held_back(cls, deferred: CallDeferred, what: str, then: str) -> DerivBusy:
        seconds = math.ceil(deferred.retry_after)
        return cls(
            f"{what} could not go to Deriv just now (nothing moved); {then} in {seconds} s",
            retry_after_seconds=seconds,
        )


# --- what the ports raise ---------------------------------------------------------------


class CallFailed(Exception):
    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class CallRefused(CallFailed):
    """Definitive: the other side refused, nothing moved."""


class CallUnavailable(CallFailed):
    """Nothing moved yet (not sent, rate-limited, not connected): try again later, same id."""


class CallDeferred(CallUnavailable):
    """Held back before it was sent (a rate limit, ours or Deriv's; no connection to the gateway):
    nothing moved and nothing was tried, so it is not an attempt. Ask again, same id, after
    `retry_after` seconds."""

    def __init__(self, reason: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class CallOutcomeUnknown(CallFailed):
    """Sent, no answer: it may have moved money. Resolve by id before anything else.
    `retry_after`: the other side said when to ask again (its lookup was rate-limited, or the
    operation is too young to settle): asking sooner is not an attempt worth counting."""

    def __init__(self, reason: str, *, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class NotExecuted(CallFailed):
    """A resolve-only lookup proved the operation never executed."""

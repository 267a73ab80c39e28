"""Errors of the payments context."""

from __future__ import annotations

from domain.shared.errors import DomainError


class InvalidIdempotencyKey(DomainError):
    reason = "INVALID_IDEMPOTENCY_KEY"
    field = "idempotency_key"


class IllegalTransition(DomainError):
    reason = "ILLEGAL_TRANSITION"


class InvalidEvidence(DomainError):
    """An M-Pesa or Deriv record that does not fit its transaction."""

    reason = "INVALID_EVIDENCE"


class AmountMismatch(DomainError):
    """An external party reports a different amount than the one PenPay asked for."""

    reason = "AMOUNT_MISMATCH"
    field = "amount"


class DuplicateReceipt(DomainError):
    """An M-Pesa receipt already held by another request: one payment is evidence for one request."""

    reason = "DUPLICATE_RECEIPT"

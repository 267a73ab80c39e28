"""Errors of the wallet context."""

from __future__ import annotations

from domain.shared.errors import ConcurrentModification, DomainError


class InvalidAmount(DomainError):
    reason = "INVALID_AMOUNT"
    field = "amount"


class UnsupportedCurrency(DomainError):
    reason = "UNSUPPORTED_CURRENCY"
    field = "currency"


class CurrencyMismatch(DomainError):
    reason = "CURRENCY_MISMATCH"
    field = "currency"


class NotWholeShillings(DomainError):
    """M-Pesa moves whole shillings only; an amount with cents cannot be sent."""

    reason = "NOT_WHOLE_SHILLINGS"
    field = "amount"


class MpesaAmountOutOfRange(DomainError):
    reason = "MPESA_AMOUNT_OUT_OF_RANGE"
    field = "amount"


class DerivAmountOutOfRange(DomainError):
    """Outside the Deriv payment agent's per-transfer limits: Deriv would refuse the transfer."""

    reason = "DERIV_AMOUNT_OUT_OF_RANGE"
    field = "amount"


class InvalidRate(DomainError):
    reason = "INVALID_RATE"
    field = "rate"


class RateExpired(DomainError):
    reason = "RATE_EXPIRED"


class UnbalancedPosting(DomainError):
    reason = "UNBALANCED_POSTING"


class UnknownLedgerAccount(DomainError):
    reason = "UNKNOWN_LEDGER_ACCOUNT"


class Overdraft(DomainError):
    """A no-overdraft account (user wallet, M-Pesa or Deriv float) would go below zero."""

    reason = "OVERDRAFT"


class FloorNotKept(ConcurrentModification):
    """A change booked without holding its account (LedgerRepository.change_last) would have
    taken the balance below the floor it was booked on: nothing of the unit of work is committed.
    Booking again holds the account (locked read, the overdraft rule, FloatLow), as before."""

    reason = "FLOOR_NOT_KEPT"

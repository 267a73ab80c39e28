"""What the checker answers: the codes of the rules, each finding, the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

DEFAULT_STALE_AFTER = timedelta(minutes=15)
DEFAULT_MAX_ROWS = 1000


class Code(StrEnum):
    # ledger
    LEDGER_UNBALANCED = "LEDGER_UNBALANCED"
    POSTING_UNBALANCED = "POSTING_UNBALANCED"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    ENTRY_CURRENCY_MISMATCH = "ENTRY_CURRENCY_MISMATCH"
    ENTRY_TRANSACTION_MISMATCH = "ENTRY_TRANSACTION_MISMATCH"
    UNKNOWN_TRANSACTION = "UNKNOWN_TRANSACTION"
    ACCOUNT_MISCONFIGURED = "ACCOUNT_MISCONFIGURED"
    BALANCE_MISMATCH = "BALANCE_MISMATCH"
    NEGATIVE_BALANCE = "NEGATIVE_BALANCE"
    UNROLLED_MISMATCH = "UNROLLED_MISMATCH"
    # evidence
    DEPOSIT_WITHOUT_TRANSFER = "DEPOSIT_WITHOUT_TRANSFER"
    DEPOSIT_WITHOUT_MPESA_PAYMENT = "DEPOSIT_WITHOUT_MPESA_PAYMENT"
    WITHDRAWAL_WITHOUT_DERIV_DEBIT = "WITHDRAWAL_WITHOUT_DERIV_DEBIT"
    WITHDRAWAL_WITHOUT_PAYOUT = "WITHDRAWAL_WITHOUT_PAYOUT"
    EVIDENCE_AMOUNT_MISMATCH = "EVIDENCE_AMOUNT_MISMATCH"
    EVIDENCE_WRONG_FLOW = "EVIDENCE_WRONG_FLOW"
    FAILED_WITH_MONEY = "FAILED_WITH_MONEY"
    REVERSED_BUT_DELIVERED = "REVERSED_BUT_DELIVERED"
    # ledger per transaction
    FLOAT_MOVEMENT_MISMATCH = "FLOAT_MOVEMENT_MISMATCH"
    FAILED_FLOAT_MOVED = "FAILED_FLOAT_MOVED"
    REVERSAL_WITHOUT_REFUND = "REVERSAL_WITHOUT_REFUND"
    WALLET_NOT_SETTLED = "WALLET_NOT_SETTLED"
    WRONG_USER_WALLET = "WRONG_USER_WALLET"
    # simulators' books
    PAID_TWICE = "PAID_TWICE"
    DERIV_TRANSFER_MISSING = "DERIV_TRANSFER_MISSING"
    DERIV_WITHDRAWAL_MISSING = "DERIV_WITHDRAWAL_MISSING"
    REFUND_NOT_EXECUTED = "REFUND_NOT_EXECUTED"
    BOOKS_AMOUNT_MISMATCH = "BOOKS_AMOUNT_MISMATCH"
    UNKNOWN_DERIV_REFERENCE = "UNKNOWN_DERIV_REFERENCE"
    UNEXPECTED_DERIV_TRANSFER = "UNEXPECTED_DERIV_TRANSFER"
    DERIV_UNBOOKED = "DERIV_UNBOOKED"
    DERIV_FLOAT_MISMATCH = "DERIV_FLOAT_MISMATCH"
    STK_CHARGE_UNKNOWN = "STK_CHARGE_UNKNOWN"
    STK_CHARGE_UNBOOKED = "STK_CHARGE_UNBOOKED"
    STK_CONFIRMED_NOT_CHARGED = "STK_CONFIRMED_NOT_CHARGED"
    MPESA_RECEIPT_MISMATCH = "MPESA_RECEIPT_MISMATCH"
    B2C_NOT_PAID = "B2C_NOT_PAID"
    B2C_PAYOUT_UNKNOWN = "B2C_PAYOUT_UNKNOWN"
    B2C_PAID_NOT_BOOKED = "B2C_PAID_NOT_BOOKED"
    MPESA_FLOAT_MISMATCH = "MPESA_FLOAT_MISMATCH"
    # funding
    FUNDING_IN_SUSPENSE = "FUNDING_IN_SUSPENSE"
    CAPITAL_MISUSED = "CAPITAL_MISUSED"


class WarningCode(StrEnum):
    MPESA_CONFIRMED_WITHOUT_RECEIPT = "MPESA_CONFIRMED_WITHOUT_RECEIPT"
    REVERSED_DEPOSIT_KES_KEPT = "REVERSED_DEPOSIT_KES_KEPT"
    IN_FLIGHT_DIFFERENCE = "IN_FLIGHT_DIFFERENCE"
    UNREFERENCED_DERIV_TRANSFER = "UNREFERENCED_DERIV_TRANSFER"
    STK_CHARGE_PENDING = "STK_CHARGE_PENDING"
    B2C_PAID_PENDING = "B2C_PAID_PENDING"
    SIMULATOR_ADJUSTMENTS = "SIMULATOR_ADJUSTMENTS"
    STK_CHARGE_IN_REVIEW = "STK_CHARGE_IN_REVIEW"
    PAYBILL_IN_SUSPENSE = "PAYBILL_IN_SUSPENSE"
    FLOAT_ENTRY_UNEXPLAINED = "FLOAT_ENTRY_UNEXPLAINED"
    TRUNCATED = "TRUNCATED"


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule (also the shape of a warning)."""

    code: str
    message: str
    transaction_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "transaction_id": self.transaction_id}


class ReviewItem(NamedTuple):
    transaction_id: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class UnresolvedTransaction:
    transaction_id: str
    type: str
    status: str
    created_at: datetime
    updated_at: datetime
    failure_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "type": self.type,
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "failure_reason": self.failure_reason,
        }


@dataclass(frozen=True, slots=True)
class FloatComparison:
    """A float in the ledger beside the same money in a simulator's books (minor units)."""

    name: str
    currency: str
    ledger_movement_cents: int  # net of the float's entries booked for transactions
    ledger_balance_cents: int  # the float accounts' stored balance (funding postings included)
    simulator_opening_cents: int
    simulator_balance_cents: int
    in_flight_difference_cents: int  # ledger - books, summed over non-terminal transactions

    @property
    def simulator_change_cents(self) -> int:
        return self.simulator_balance_cents - self.simulator_opening_cents

    @property
    def unexplained_cents(self) -> int:
        return self.ledger_movement_cents - self.simulator_change_cents - self.in_flight_difference_cents

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["simulator_change_cents"] = self.simulator_change_cents
        data["unexplained_cents"] = self.unexplained_cents
        return data


@dataclass
class ConsistencyReport:
    checked_at: datetime
    stale_after: timedelta
    violations: list[Violation] = field(default_factory=list)
    warnings: list[Violation] = field(default_factory=list)
    needs_review: list[ReviewItem] = field(default_factory=list)
    unresolved: list[UnresolvedTransaction] = field(default_factory=list)
    counts_by_status: dict[str, int] = field(default_factory=dict)
    counts_by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    # {"KES": {"debit_cents": ..., "credit_cents": ...}}
    sums_by_currency: dict[str, dict[str, int]] = field(default_factory=dict)
    # stored balances summed by "KIND CURRENCY", e.g. "DERIV_AGENT_FLOAT USD"
    balances_by_kind: dict[str, int] = field(default_factory=dict)
    floats: list[FloatComparison] = field(default_factory=list)
    books_checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.unresolved

    def codes(self) -> set[str]:
        return {v.code for v in self.violations}

    def warning_codes(self) -> set[str]:
        return {w.code for w in self.warnings}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked_at": self.checked_at.isoformat(),
            "stale_after_seconds": int(self.stale_after.total_seconds()),
            "violations": [v.to_dict() for v in self.violations],
            "warnings": [w.to_dict() for w in self.warnings],
            "needs_review": [
                {"transaction_id": r.transaction_id, "reason": r.reason} for r in self.needs_review
            ],
            "unresolved": [u.to_dict() for u in self.unresolved],
            "counts_by_status": self.counts_by_status,
            "counts_by_type": self.counts_by_type,
            "sums_by_currency": self.sums_by_currency,
            "balances_by_kind": self.balances_by_kind,
            "floats": [f.to_dict() for f in self.floats],
            "books_checked": self.books_checked,
        }

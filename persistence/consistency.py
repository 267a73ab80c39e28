"""The consistency checker: proves, after any run, that the database tells one true story.

`check_consistency(engine, now=..., stale_after=...)` reads the database (one connection, so
on MariaDB one REPEATABLE READ snapshot) with aggregate queries that return only the rows
that break a rule, and answers a `ConsistencyReport`. Given `SimulatorBooks` (what the
Deriv and M-Pesa simulators really executed, fetched by proving.simulator_books), it also
compares the database with those books.

Sign convention used below: a "net" is sum(DEBIT) - sum(CREDIT) of a set of entries, in
minor units of one currency. A debit-normal account (the floats) grows by its net; a
credit-normal one (wallets, FX, FX spread, fees, suspense) shrinks by it. FX and FX_SPREAD are
clearing accounts (bookings.py: the conversion at the quote's reference rate, and what the customer's
rate and rounding earned): no per-transaction rule reads them, the sums per currency cover them, and
their balances are reported (balances_by_kind).

The rules
---------
Ledger (every row of ledger_entries, ledger_postings, ledger_accounts):
  LEDGER_UNBALANCED        per currency, sum of DEBIT entries != sum of CREDIT entries
  POSTING_UNBALANCED       a posting's entries do not net to zero in some currency
  UNKNOWN_ACCOUNT          an entry names a ledger account that does not exist
  ENTRY_CURRENCY_MISMATCH  an entry's currency is not its account's currency
  ENTRY_TRANSACTION_MISMATCH  an entry's transaction_id differs from its posting's (or the
                           posting is missing)
  UNKNOWN_TRANSACTION      an entry names a transaction that does not exist
  ACCOUNT_MISCONFIGURED    normal_side is not the kind's (domain AccountKind), an unknown
                           kind, or a user wallet without a user (or a system account with one)
  BALANCE_MISMATCH         balance_cents != sum(entries on the normal side) - sum(the others)
  NEGATIVE_BALANCE         an account that may not be overdrawn (no_overdraft, or a kind whose
                           default is no-overdraft: user wallets and both floats) is below zero,
                           stored or recomputed

Evidence (transactions and their attachment rows):
  DEPOSIT_WITHOUT_TRANSFER       COMPLETED deposit without a CONFIRMED deriv_transfers row
                                 carrying a deriv_transaction_id
  DEPOSIT_WITHOUT_MPESA_PAYMENT  COMPLETED deposit without a CONFIRMED mpesa_requests row
                                 (CONFIRMED with no receipt: warning
                                 MPESA_CONFIRMED_WITHOUT_RECEIPT, "confirmed by query")
  WITHDRAWAL_WITHOUT_DERIV_DEBIT COMPLETED or REVERSED withdrawal without a CONFIRMED
                                 deriv_withdrawals row carrying a deriv_transaction_id
  WITHDRAWAL_WITHOUT_PAYOUT      COMPLETED withdrawal without a CONFIRMED mpesa_disbursements row
  EVIDENCE_AMOUNT_MISMATCH       a confirmed evidence row's amount is not the transaction's
                                 (STK and Deriv withdrawal: amount; Deriv transfer and B2C:
                                 converted_amount)
  EVIDENCE_WRONG_FLOW            a deposit with withdrawal evidence (its B2C record is allowed as
                                 the refund of a received payment whose Deriv transfer failed),
                                 or the reverse
  FAILED_WITH_MONEY              FAILED transaction with CONFIRMED money evidence (a paid STK,
                                 a Deriv credit or debit, a B2C payout): money moved, not handled
  REVERSED_BUT_DELIVERED         REVERSED deposit whose Deriv transfer is CONFIRMED, or REVERSED
                                 withdrawal whose B2C is CONFIRMED (refunded and delivered)
  NEEDS_REVIEW transactions are listed with their failure_reason (not errors); transactions
  in any other non-terminal status created before now - stale_after are `unresolved`.

Ledger per transaction (terminal transactions; postings' transaction_id):
  COMPLETED deposit:    M-Pesa float KES net == +amount, Deriv agent float USD net ==
                        -converted_amount, the user's KES and USD wallets net 0 (the money
                        passed through them), no other float moved.
  COMPLETED withdrawal: Deriv agent float USD net == +amount, M-Pesa float KES net ==
                        -converted_amount, wallets net 0.
  REVERSED withdrawal:  both floats net 0 and wallets net 0: the debit (+amount) was refunded
                        (-amount); when the float net is still +amount: REVERSAL_WITHOUT_REFUND.
  REVERSED deposit:     Deriv agent float net 0 (the USD never reached the user); refunded by
                        B2C after review (bookings.deposit_refund) the M-Pesa float and the
                        wallets net 0; a KES balance left in them is a warning
                        (REVERSED_DEPOSIT_KES_KEPT).
  FAILED:               no float moved (FAILED_FLOAT_MOVED) and wallets net 0.
  Codes: FLOAT_MOVEMENT_MISMATCH, FAILED_FLOAT_MOVED, REVERSAL_WITHOUT_REFUND,
  WALLET_NOT_SETTLED, WRONG_USER_WALLET (a transaction's entry on another user's wallet).

Against the simulators' books (SimulatorBooks):
  PAID_TWICE              one PenPay operation executed more than once on Deriv (same
                          reference), or more than one B2C paid for one withdrawal
  DERIV_TRANSFER_MISSING  COMPLETED deposit whose transfer is not in the Deriv books
  DERIV_WITHDRAWAL_MISSING  COMPLETED/REVERSED withdrawal whose debit is not in the Deriv books
  REFUND_NOT_EXECUTED     REVERSED withdrawal whose refund (`<id>-refund`) is not in the books
  BOOKS_AMOUNT_MISMATCH   a simulator executed another amount than the transaction's
  UNKNOWN_DERIV_REFERENCE a Deriv transfer carries a PenPay reference to no transaction
  UNEXPECTED_DERIV_TRANSFER  a Deriv movement of the wrong kind for its transaction
  DERIV_UNBOOKED          terminal transaction: the Deriv agent's movements for it differ
                          from its ledger's DERIV_AGENT_FLOAT movements
  DERIV_FLOAT_MISMATCH    ledger DERIV_AGENT_FLOAT USD movements (postings with a transaction)
                          != the agent's balance change in the simulator (current - opening),
                          beyond what in-flight transactions explain
  STK_CHARGE_UNKNOWN      a charged STK push matches no mpesa_requests row (and no NEEDS_REVIEW
                          deposit of the same phone and amount that never recorded its push's
                          answer: that one is warning STK_CHARGE_IN_REVIEW, the review's to settle)
  STK_CHARGE_UNBOOKED     a charged STK push whose request is not CONFIRMED while its
                          transaction is terminal (NEEDS_REVIEW and in-flight: not a violation)
  STK_CONFIRMED_NOT_CHARGED  a CONFIRMED mpesa_requests row the M-Pesa books never charged
  MPESA_RECEIPT_MISMATCH  the stored receipt is not the one M-Pesa issued
  B2C_NOT_PAID            COMPLETED withdrawal whose OriginatorConversationID was not paid
  B2C_PAYOUT_UNKNOWN      a paid B2C belongs to no withdrawal
  B2C_PAID_NOT_BOOKED     a paid B2C of a FAILED or REVERSED withdrawal
  MPESA_FLOAT_MISMATCH    as DERIV_FLOAT_MISMATCH, for the M-Pesa float and the utility account
A paybill (C2B) collection is a charge like an STK push, under `C2B-<TransID>` (the MpesaRequest
of a paybill deposit); one held in suspense (c2b_payments SUSPENSE) is warning PAYBILL_IN_SUSPENSE,
and its suspense posting (no transaction) counts in the M-Pesa float's movement.

`ok` is true when there is no violation and no unresolved transaction.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from sqlalchemy import and_, case, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from domain.payments.status import TERMINAL_STATUSES, TransactionStatus, TransactionType
from domain.wallet.account_kind import AccountKind, LedgerSide
from persistence.tables import (
    c2b_payments,
    deriv_transfers,
    deriv_withdrawals,
    ledger_accounts,
    ledger_entries,
    ledger_postings,
    mpesa_disbursements,
    mpesa_requests,
    transactions,
)

DEFAULT_STALE_AFTER = timedelta(minutes=15)
DEFAULT_MAX_ROWS = 1000
_CHUNK = 500


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


# --- what the simulators executed (filled in by proving.simulator_books) ------------------------

DERIV_TRANSFER_KIND = "paymentagent_transfer"  # agent -> client
DERIV_WITHDRAW_KIND = "paymentagent_withdraw"  # client -> agent
REFUND_SUFFIX = "-refund"


@dataclass(frozen=True, slots=True)
class DerivBookTransfer:
    """One executed paymentagent_transfer / paymentagent_withdraw in the Deriv books."""

    transfer_id: int
    kind: str
    from_loginid: str
    to_loginid: str
    amount_cents: int
    currency: str
    description: str
    # The PenPay operation id read from the description (`<transaction id>` or
    # `<transaction id>-refund`), None when the description is not a PenPay reference.
    operation_id: str | None
    debit_transaction_id: int | None = None


@dataclass(frozen=True, slots=True)
class DerivBooks:
    agent_loginid: str
    currency: str
    agent_balance_cents: int
    opening_balance_cents: int
    transfers: tuple[DerivBookTransfer, ...]
    adjustments_cents: int = 0  # the agent's adjustment entries (control API), for the report


@dataclass(frozen=True, slots=True)
class StkCharge:
    checkout_request_id: str
    amount_cents: int  # KES minor units (the simulator books whole shillings)
    phone: str
    charged: bool
    receipt: str | None = None


@dataclass(frozen=True, slots=True)
class B2CPayout:
    originator_conversation_id: str
    amount_cents: int
    phone: str
    paid: bool
    receipt: str | None = None
    # The PenPay transaction the OriginatorConversationID names, when it has a PenPay form;
    # used only when no mpesa_disbursements row carries this id.
    transaction_id: str | None = None


@dataclass(frozen=True, slots=True)
class MpesaBooks:
    stk: tuple[StkCharge, ...]
    b2c: tuple[B2CPayout, ...]
    utility_cents: int
    opening_utility_cents: int


@dataclass(frozen=True, slots=True)
class SimulatorBooks:
    deriv: DerivBooks | None = None
    mpesa: MpesaBooks | None = None


# --- SQL building blocks --------------------------------------------------------------------

_t = transactions
_e = ledger_entries
_a = ledger_accounts
_p = ledger_postings
_DEBIT = LedgerSide.DEBIT.value
_CREDIT = LedgerSide.CREDIT.value
S = TransactionStatus
_TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)
_DEPOSIT = TransactionType.DEPOSIT.value
_WITHDRAWAL = TransactionType.WITHDRAWAL.value
_CONFIRMED = "CONFIRMED"
_K = AccountKind
_FLOATS = (_K.MPESA_FLOAT.value, _K.DERIV_AGENT_FLOAT.value)
_NO_OVERDRAFT_KINDS = sorted(k.value for k in AccountKind if k.default_no_overdraft)


def _signed() -> ColumnElement[Any]:
    """An entry's effect as DEBIT minus CREDIT."""
    return case((_e.c.side == _DEBIT, _e.c.amount_cents), else_=-_e.c.amount_cents)


def _net_where(*conditions: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((and_(*conditions), _signed()), else_=0))


def _flows(*where: ColumnElement[bool]) -> Any:
    """Per transaction: the nets of the floats and of the user wallets, by currency."""
    kind, cur = _a.c.kind, _e.c.amount_currency
    mpesa = and_(kind == _K.MPESA_FLOAT.value, cur == "KES")
    deriv = and_(kind == _K.DERIV_AGENT_FLOAT.value, cur == "USD")
    statement = (
        select(
            _e.c.transaction_id.label("tx_id"),
            _net_where(mpesa).label("mpesa_kes"),
            _net_where(deriv).label("deriv_usd"),
            _net_where(kind == _K.USER_WALLET.value, cur == "KES").label("wallet_kes"),
            _net_where(kind == _K.USER_WALLET.value, cur == "USD").label("wallet_usd"),
            func.sum(
                case(
                    (and_(kind.in_(_FLOATS), not_(or_(mpesa, deriv))), _e.c.amount_cents),
                    else_=0,
                )
            ).label("float_other"),
        )
        .select_from(_e.join(_a, _a.c.id == _e.c.account_id))
        .where(_e.c.transaction_id.is_not(None), *where)
        .group_by(_e.c.transaction_id)
    )
    return statement


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


def _tx(value: Any) -> str | None:
    return None if value is None else str(value)


def _money(cents: int, currency: str | None = None) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    text = f"{sign}{whole}.{part:02d}"
    return f"{text} {currency}" if currency else text


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _Collector:
    def __init__(self, report: ConsistencyReport, max_rows: int) -> None:
        self.report = report
        self.max_rows = max_rows

    def violation(self, code: str, message: str, transaction_id: Any = None) -> None:
        self.report.violations.append(Violation(str(code), message, _tx(transaction_id)))

    def warning(self, code: str, message: str, transaction_id: Any = None) -> None:
        self.report.warnings.append(Violation(str(code), message, _tx(transaction_id)))

    async def rows(self, connection: AsyncConnection, statement: Any, what: str) -> list[Any]:
        """At most max_rows offending rows; a warning says when more were left out."""
        rows = list(await connection.execute(statement.limit(self.max_rows + 1)))
        if len(rows) > self.max_rows:
            self.warning(WarningCode.TRUNCATED, f"only the first {self.max_rows} rows of '{what}' are listed")
            rows = rows[: self.max_rows]
        return rows


# --- the check ------------------------------------------------------------------------------


async def check_consistency(
    engine: AsyncEngine,
    *,
    now: datetime,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    books: SimulatorBooks | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> ConsistencyReport:
    """Check the ledger, the transactions and their evidence (and, given, the simulators'
    books). `now` must be timezone-aware; `max_rows` caps the rows listed per rule."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    report = ConsistencyReport(checked_at=now, stale_after=stale_after)
    out = _Collector(report, max_rows)
    async with engine.connect() as connection:
        await _ledger_totals(connection, out)
        await _postings(connection, out)
        await _accounts(connection, out)
        await _transaction_overview(connection, out, now=now, stale_after=stale_after)
        await _evidence(connection, out)
        await _ledger_per_transaction(connection, out)
        if books is not None and books.deriv is not None:
            await _check_deriv_books(connection, out, books.deriv)
            report.books_checked.append("deriv")
        if books is not None and books.mpesa is not None:
            await _check_mpesa_books(connection, out, books.mpesa)
            report.books_checked.append("mpesa")
        await connection.rollback()
    return report


# --- 1. the ledger sums to zero ---------------------------------------------------------


async def _ledger_totals(connection: AsyncConnection, out: _Collector) -> None:
    amount = _e.c.amount_cents
    rows = await connection.execute(
        select(
            _e.c.amount_currency,
            func.sum(case((_e.c.side == _DEBIT, amount), else_=0)),
            func.sum(case((_e.c.side == _CREDIT, amount), else_=0)),
            func.sum(case((_e.c.side.not_in([_DEBIT, _CREDIT]), 1), else_=0)),
        ).group_by(_e.c.amount_currency)
    )
    for currency, debits, credits, odd_sides in rows:
        debit_cents, credit_cents = _int(debits), _int(credits)
        out.report.sums_by_currency[str(currency)] = {
            "debit_cents": debit_cents,
            "credit_cents": credit_cents,
        }
        if debit_cents != credit_cents or _int(odd_sides):
            extra = f"; {_int(odd_sides)} entries with a side that is neither" if _int(odd_sides) else ""
            out.violation(
                Code.LEDGER_UNBALANCED,
                f"{currency}: debits {_money(debit_cents)} != credits {_money(credit_cents)} "
                f"(difference {_money(debit_cents - credit_cents)}){extra}",
            )


async def _postings(connection: AsyncConnection, out: _Collector) -> None:
    # Per posting, one net per currency the ledger holds (grouping by posting alone walks the
    # posting_id index; grouping by posting and currency would sort a temporary table).
    currencies = sorted(out.report.sums_by_currency)
    nets = [
        _net_where(_e.c.amount_currency == currency).label(f"net_{i}")
        for i, currency in enumerate(currencies)
    ]
    if nets:
        unbalanced = (
            select(_e.c.posting_id, *nets)
            .group_by(_e.c.posting_id)
            .having(
                or_(
                    *[
                        func.sum(case((_e.c.amount_currency == c, _signed()), else_=0)) != 0
                        for c in currencies
                    ]
                )
            )
        )
        rows = await out.rows(connection, unbalanced, "unbalanced postings")
        transaction_of: dict[Any, Any] = {}
        for chunk in _chunks([row.posting_id for row in rows]):
            found = await connection.execute(
                select(_p.c.id, _p.c.transaction_id).where(_p.c.id.in_(list(chunk)))
            )
            transaction_of.update({row.id: row.transaction_id for row in found})
        for row in rows:
            for i, currency in enumerate(currencies):
                value = _int(getattr(row, f"net_{i}"))
                if value:
                    out.violation(
                        Code.POSTING_UNBALANCED,
                        f"posting {row.posting_id} does not balance in {currency}: "
                        f"debits - credits = {_money(value)}",
                        transaction_of.get(row.posting_id),
                    )

    # One pass over the entries, each joined to its account, posting and transaction.
    account_missing = _a.c.id.is_(None)
    posting_missing = _p.c.id.is_(None)
    wrong_currency = _e.c.amount_currency != _a.c.currency
    wrong_transaction = not_(_e.c.transaction_id.is_not_distinct_from(_p.c.transaction_id))
    transaction_missing = and_(_e.c.transaction_id.is_not(None), _t.c.id.is_(None))
    wrong_user = and_(_a.c.kind == _K.USER_WALLET.value, _t.c.id.is_not(None), _a.c.user_id != _t.c.user_id)
    entries = (
        select(
            _e.c.id,
            _e.c.posting_id,
            _e.c.account_id,
            _e.c.transaction_id,
            _e.c.amount_currency,
            _a.c.id.label("found_account"),
            _a.c.code,
            _a.c.currency,
            _p.c.id.label("found_posting"),
            _p.c.transaction_id.label("posting_tx"),
            _t.c.id.label("found_tx"),
            _t.c.user_id.label("tx_user"),
            wrong_user.label("wrong_user"),
        )
        .select_from(
            _e.outerjoin(_a, _a.c.id == _e.c.account_id)
            .outerjoin(_p, _p.c.id == _e.c.posting_id)
            .outerjoin(_t, _t.c.id == _e.c.transaction_id)
        )
        .where(
            or_(
                account_missing,
                posting_missing,
                wrong_currency,
                wrong_transaction,
                transaction_missing,
                wrong_user,
            )
        )
        .order_by(_e.c.id)
    )
    unknown_transactions: dict[Any, int] = defaultdict(int)
    wrong_wallets: dict[tuple[Any, str], Any] = {}
    for row in await out.rows(connection, entries, "ledger entries"):
        tx_id = row.transaction_id
        if row.found_account is None:
            out.violation(
                Code.UNKNOWN_ACCOUNT,
                f"entry {row.id} of posting {row.posting_id} names ledger account {row.account_id}, "
                "which does not exist",
                tx_id,
            )
        elif row.amount_currency != row.currency:
            out.violation(
                Code.ENTRY_CURRENCY_MISMATCH,
                f"entry {row.id} moves {row.amount_currency} on account {row.code}, "
                f"which holds {row.currency}",
                tx_id,
            )
        if row.found_posting is None:
            out.violation(
                Code.ENTRY_TRANSACTION_MISMATCH,
                f"entry {row.id} names posting {row.posting_id}, which does not exist",
                tx_id,
            )
        elif row.posting_tx != tx_id:
            out.violation(
                Code.ENTRY_TRANSACTION_MISMATCH,
                f"entry {row.id} says transaction {tx_id}, "
                f"its posting {row.posting_id} says {row.posting_tx}",
                tx_id or row.posting_tx,
            )
        if tx_id is not None and row.found_tx is None:
            unknown_transactions[tx_id] += 1
        if row.wrong_user:
            wrong_wallets[(tx_id, row.code)] = row.tx_user
    for tx_id, count in unknown_transactions.items():
        out.violation(
            Code.UNKNOWN_TRANSACTION,
            f"{count} ledger entries name transaction {tx_id}, which does not exist",
            tx_id,
        )
    for (tx_id, code), user_id in wrong_wallets.items():
        out.violation(
            Code.WRONG_USER_WALLET,
            f"transaction of user {user_id} has entries on wallet {code} of another user",
            tx_id,
        )


# --- 2. balances ------------------------------------------------------------------------------


async def _accounts(connection: AsyncConnection, out: _Collector) -> None:
    per_account = (
        select(_e.c.account_id.label("account_id"), func.sum(_signed()).label("net"))
        .group_by(_e.c.account_id)
        .subquery("per_account")
    )
    net = func.coalesce(per_account.c.net, 0)
    computed = case((_a.c.normal_side == _DEBIT, net), else_=-net)
    expected_side = case(*[(_a.c.kind == k.value, k.normal_side.value) for k in AccountKind], else_=None)
    may_not_go_negative = or_(_a.c.no_overdraft.is_(True), _a.c.kind.in_(_NO_OVERDRAFT_KINDS))
    misconfigured = or_(
        expected_side.is_(None),
        _a.c.normal_side != expected_side,
        and_(_a.c.kind == _K.USER_WALLET.value, _a.c.user_id.is_(None)),
        and_(_a.c.kind != _K.USER_WALLET.value, _a.c.user_id.is_not(None)),
    )
    statement = (
        select(
            _a.c.id,
            _a.c.code,
            _a.c.kind,
            _a.c.currency,
            _a.c.normal_side,
            _a.c.user_id,
            _a.c.balance_cents,
            computed.label("computed"),
            may_not_go_negative.label("guarded"),
            expected_side.label("expected_side"),
        )
        .select_from(_a.outerjoin(per_account, per_account.c.account_id == _a.c.id))
        .where(
            or_(
                _a.c.balance_cents != computed,
                and_(may_not_go_negative, or_(_a.c.balance_cents < 0, computed < 0)),
                misconfigured,
            )
        )
        .order_by(_a.c.id)
    )
    for row in await out.rows(connection, statement, "accounts"):
        stored, recomputed = _int(row.balance_cents), _int(row.computed)
        if row.expected_side is None or row.normal_side != row.expected_side:
            out.violation(
                Code.ACCOUNT_MISCONFIGURED,
                f"account {row.code}: kind {row.kind} is {row.expected_side or 'not a known kind'}-normal, "
                f"the row says {row.normal_side}",
            )
        if (row.kind == _K.USER_WALLET.value) != (row.user_id is not None):
            out.violation(
                Code.ACCOUNT_MISCONFIGURED,
                f"account {row.code}: a user wallet, and only a user wallet, belongs to a user",
            )
        if stored != recomputed:
            out.violation(
                Code.BALANCE_MISMATCH,
                f"account {row.code}: stored balance {_money(stored, row.currency)}, its entries on the "
                f"{row.normal_side} side make {_money(recomputed, row.currency)}",
            )
        if row.guarded and (stored < 0 or recomputed < 0):
            out.violation(
                Code.NEGATIVE_BALANCE,
                f"account {row.code} may not be overdrawn and is at "
                f"{_money(min(stored, recomputed), row.currency)}",
            )

    by_kind = await connection.execute(
        select(_a.c.kind, _a.c.currency, func.sum(_a.c.balance_cents)).group_by(_a.c.kind, _a.c.currency)
    )
    for kind, currency, total in by_kind:
        out.report.balances_by_kind[f"{kind} {currency}"] = _int(total)


# --- 3. transactions and their evidence -----------------------------------------------------


async def _transaction_overview(
    connection: AsyncConnection, out: _Collector, *, now: datetime, stale_after: timedelta
) -> None:
    counts = await connection.execute(
        select(_t.c.type, _t.c.status, func.count()).group_by(_t.c.type, _t.c.status)
    )
    for type_, status, count in counts:
        out.report.counts_by_status[status] = out.report.counts_by_status.get(status, 0) + int(count)
        out.report.counts_by_type.setdefault(type_, {})[status] = int(count)

    review = (
        select(_t.c.id, _t.c.failure_reason)
        .where(_t.c.status == S.NEEDS_REVIEW.value)
        .order_by(_t.c.updated_at, _t.c.id)
    )
    for tx_id, reason in await out.rows(connection, review, "transactions in NEEDS_REVIEW"):
        out.report.needs_review.append(ReviewItem(str(tx_id), reason))

    cutoff = now - stale_after
    stale = (
        select(_t.c.id, _t.c.type, _t.c.status, _t.c.created_at, _t.c.updated_at, _t.c.failure_reason)
        .where(_t.c.status.not_in([*_TERMINAL, S.NEEDS_REVIEW.value]), _t.c.created_at < cutoff)
        .order_by(_t.c.created_at, _t.c.id)
    )
    for row in await out.rows(connection, stale, "unresolved transactions"):
        out.report.unresolved.append(
            UnresolvedTransaction(
                transaction_id=str(row.id),
                type=row.type,
                status=row.status,
                created_at=row.created_at,
                updated_at=row.updated_at,
                failure_reason=row.failure_reason,
            )
        )


async def _evidence(connection: AsyncConnection, out: _Collector) -> None:
    mr, dt, dw, md = (
        mpesa_requests.alias("mr"),
        deriv_transfers.alias("dt"),
        deriv_withdrawals.alias("dw"),
        mpesa_disbursements.alias("md"),
    )
    deposit, withdrawal = _t.c.type == _DEPOSIT, _t.c.type == _WITHDRAWAL
    completed, failed, reversed_ = (
        _t.c.status == S.COMPLETED.value,
        _t.c.status == S.FAILED.value,
        _t.c.status == S.REVERSED.value,
    )
    converted = _t.c.converted_amount_cents

    def confirmed(alias: Any) -> ColumnElement[bool]:
        return and_(alias.c.transaction_id.is_not(None), alias.c.status == _CONFIRMED)

    def not_confirmed(alias: Any, with_deriv_id: bool = False) -> ColumnElement[bool]:
        conditions = [alias.c.transaction_id.is_(None), alias.c.status != _CONFIRMED]
        if with_deriv_id:
            conditions.append(alias.c.deriv_transaction_id.is_(None))
        return or_(*conditions)

    def wrong_amount(alias: Any, expected: Any) -> ColumnElement[bool]:
        return and_(confirmed(alias), or_(expected.is_(None), alias.c.amount_cents != expected))

    problem = or_(
        and_(
            deposit,
            completed,
            or_(
                not_confirmed(dt, with_deriv_id=True),
                not_confirmed(mr),
                mr.c.mpesa_receipt_number.is_(None),
                wrong_amount(dt, converted),
                wrong_amount(mr, _t.c.amount_cents),
            ),
        ),
        and_(
            withdrawal,
            or_(completed, reversed_),
            or_(not_confirmed(dw, with_deriv_id=True), wrong_amount(dw, _t.c.amount_cents)),
        ),
        and_(withdrawal, completed, or_(not_confirmed(md), wrong_amount(md, converted))),
        and_(failed, or_(confirmed(mr), confirmed(dt), confirmed(dw), confirmed(md))),
        and_(reversed_, or_(and_(deposit, confirmed(dt)), and_(withdrawal, confirmed(md)))),
        and_(deposit, or_(dw.c.transaction_id.is_not(None), md.c.transaction_id.is_not(None))),
        and_(withdrawal, or_(mr.c.transaction_id.is_not(None), dt.c.transaction_id.is_not(None))),
    )
    statement = (
        select(
            _t.c.id,
            _t.c.type,
            _t.c.status,
            _t.c.amount_cents,
            _t.c.converted_amount_cents,
            mr.c.transaction_id.label("mr_id"),
            mr.c.status.label("mr_status"),
            mr.c.amount_cents.label("mr_amount"),
            mr.c.mpesa_receipt_number.label("mr_receipt"),
            dt.c.transaction_id.label("dt_id"),
            dt.c.status.label("dt_status"),
            dt.c.amount_cents.label("dt_amount"),
            dt.c.deriv_transaction_id.label("dt_deriv_id"),
            dw.c.transaction_id.label("dw_id"),
            dw.c.status.label("dw_status"),
            dw.c.amount_cents.label("dw_amount"),
            dw.c.deriv_transaction_id.label("dw_deriv_id"),
            md.c.transaction_id.label("md_id"),
            md.c.status.label("md_status"),
            md.c.amount_cents.label("md_amount"),
        )
        .select_from(
            _t.outerjoin(mr, mr.c.transaction_id == _t.c.id)
            .outerjoin(dt, dt.c.transaction_id == _t.c.id)
            .outerjoin(dw, dw.c.transaction_id == _t.c.id)
            .outerjoin(md, md.c.transaction_id == _t.c.id)
        )
        .where(problem)
        .order_by(_t.c.id)
    )
    for row in await out.rows(connection, statement, "transactions with evidence problems"):
        _classify_evidence(out, row)


def _evidence_state(present: Any, status: Any) -> str:
    return "no row" if present is None else f"status {status}"


def _classify_evidence(out: _Collector, row: Any) -> None:
    tx, status, amount, converted = row.id, row.status, _int(row.amount_cents), row.converted_amount_cents
    is_deposit = row.type == _DEPOSIT
    mr_ok = row.mr_id is not None and row.mr_status == _CONFIRMED
    dt_ok = row.dt_id is not None and row.dt_status == _CONFIRMED
    dw_ok = row.dw_id is not None and row.dw_status == _CONFIRMED
    md_ok = row.md_id is not None and row.md_status == _CONFIRMED

    def amount_check(ok: bool, found: Any, expected: Any, what: str) -> None:
        if ok and (expected is None or _int(found) != _int(expected)):
            out.violation(
                Code.EVIDENCE_AMOUNT_MISMATCH,
                f"{what} is for {_money(_int(found))}, the transaction for "
                f"{'nothing' if expected is None else _money(_int(expected))}",
                tx,
            )

    # A deposit's B2C record is its refund (approved in review): for the whole amount, and only
    # once the customer's payment was received and the Deriv transfer failed.
    if is_deposit and row.dw_id is not None:
        out.violation(Code.EVIDENCE_WRONG_FLOW, "a deposit has a Deriv withdrawal record", tx)
    if is_deposit and row.md_id is not None and not (mr_ok and not dt_ok):
        out.violation(Code.EVIDENCE_WRONG_FLOW, "a deposit has a B2C refund without a received payment", tx)
    if not is_deposit and (row.mr_id is not None or row.dt_id is not None):
        out.violation(Code.EVIDENCE_WRONG_FLOW, "a withdrawal has an STK push or Deriv transfer record", tx)

    if status == S.COMPLETED.value and is_deposit:
        if not dt_ok or row.dt_deriv_id is None:
            state = _evidence_state(row.dt_id, row.dt_status)
            if dt_ok:
                state = "CONFIRMED without a Deriv transaction id"
            out.violation(
                Code.DEPOSIT_WITHOUT_TRANSFER,
                f"COMPLETED deposit without a confirmed Deriv transfer ({state})",
                tx,
            )
        if not mr_ok:
            out.violation(
                Code.DEPOSIT_WITHOUT_MPESA_PAYMENT,
                "COMPLETED deposit without a confirmed M-Pesa payment "
                f"({_evidence_state(row.mr_id, row.mr_status)})",
                tx,
            )
        elif row.mr_receipt is None:
            out.warning(
                WarningCode.MPESA_CONFIRMED_WITHOUT_RECEIPT,
                "M-Pesa payment confirmed by query without a receipt number",
                tx,
            )
        amount_check(dt_ok, row.dt_amount, converted, "the Deriv transfer")
        amount_check(mr_ok, row.mr_amount, amount, "the M-Pesa payment")
    if status in (S.COMPLETED.value, S.REVERSED.value) and not is_deposit:
        if not dw_ok or row.dw_deriv_id is None:
            state = _evidence_state(row.dw_id, row.dw_status)
            if dw_ok:
                state = "CONFIRMED without a Deriv transaction id"
            out.violation(
                Code.WITHDRAWAL_WITHOUT_DERIV_DEBIT,
                f"{status} withdrawal without a confirmed Deriv withdrawal ({state})",
                tx,
            )
        amount_check(dw_ok, row.dw_amount, amount, "the Deriv withdrawal")
    if status == S.COMPLETED.value and not is_deposit:
        if not md_ok:
            out.violation(
                Code.WITHDRAWAL_WITHOUT_PAYOUT,
                "COMPLETED withdrawal without a confirmed B2C payout "
                f"({_evidence_state(row.md_id, row.md_status)})",
                tx,
            )
        amount_check(md_ok, row.md_amount, converted, "the B2C payout")
    if status == S.FAILED.value:
        moved = [
            name
            for name, ok in (
                ("a confirmed M-Pesa payment", mr_ok),
                ("a confirmed Deriv transfer", dt_ok),
                ("a confirmed Deriv withdrawal", dw_ok),
                ("a confirmed B2C payout", md_ok),
            )
            if ok
        ]
        if moved:
            out.violation(
                Code.FAILED_WITH_MONEY,
                f"FAILED {row.type.lower()} has {', '.join(moved)}: money moved and was not handled",
                tx,
            )
    if status == S.REVERSED.value and ((is_deposit and dt_ok) or (not is_deposit and md_ok)):
        what = "its Deriv transfer" if is_deposit else "its B2C payout"
        out.violation(Code.REVERSED_BUT_DELIVERED, f"REVERSED {row.type.lower()} but {what} is CONFIRMED", tx)


# --- 4. the ledger of each transaction ---------------------------------------------------


async def _ledger_per_transaction(connection: AsyncConnection, out: _Collector) -> None:
    flows = _flows().subquery("flows")
    mpesa = func.coalesce(flows.c.mpesa_kes, 0)
    deriv = func.coalesce(flows.c.deriv_usd, 0)
    wallet_kes = func.coalesce(flows.c.wallet_kes, 0)
    wallet_usd = func.coalesce(flows.c.wallet_usd, 0)
    other = func.coalesce(flows.c.float_other, 0)
    converted = func.coalesce(_t.c.converted_amount_cents, 0)
    deposit, withdrawal = _t.c.type == _DEPOSIT, _t.c.type == _WITHDRAWAL
    completed = _t.c.status == S.COMPLETED.value
    reversed_deposit = and_(deposit, _t.c.status == S.REVERSED.value)
    expected_mpesa = case(
        (and_(deposit, completed), _t.c.amount_cents), (and_(withdrawal, completed), -converted), else_=0
    )
    expected_deriv = case(
        (and_(deposit, completed), -converted), (and_(withdrawal, completed), _t.c.amount_cents), else_=0
    )
    wallets_moved = or_(wallet_kes != 0, wallet_usd != 0)
    statement = (
        select(
            _t.c.id,
            _t.c.type,
            _t.c.status,
            _t.c.amount_cents,
            _t.c.converted_amount_cents,
            mpesa.label("mpesa"),
            deriv.label("deriv"),
            wallet_kes.label("wallet_kes"),
            wallet_usd.label("wallet_usd"),
            other.label("other"),
        )
        .select_from(_t.outerjoin(flows, flows.c.tx_id == _t.c.id))
        .where(
            _t.c.status.in_(_TERMINAL),
            or_(
                deriv != expected_deriv,
                other != 0,
                and_(not_(reversed_deposit), or_(mpesa != expected_mpesa, wallets_moved)),
                and_(reversed_deposit, or_(mpesa != 0, wallets_moved)),
            ),
        )
        .order_by(_t.c.id)
    )
    for row in await out.rows(connection, statement, "transactions whose ledger disagrees"):
        _classify_flows(out, row)


def _classify_flows(out: _Collector, row: Any) -> None:
    tx, status, kind = row.id, row.status, row.type
    amount, converted = _int(row.amount_cents), _int(row.converted_amount_cents)
    mpesa, deriv = _int(row.mpesa), _int(row.deriv)
    wallet_kes, wallet_usd, other = _int(row.wallet_kes), _int(row.wallet_usd), _int(row.other)
    is_deposit = kind == _DEPOSIT
    label = f"{status} {kind.lower()}"

    if status == S.FAILED.value:
        if mpesa or deriv or other:
            out.violation(
                Code.FAILED_FLOAT_MOVED,
                f"{label}: the floats moved (M-Pesa {_money(mpesa, 'KES')}, Deriv agent "
                f"{_money(deriv, 'USD')}, other {_money(other)}); a failed transaction moves no money",
                tx,
            )
    elif status == S.REVERSED.value and not is_deposit and deriv == amount and mpesa == 0:
        out.violation(
            Code.REVERSAL_WITHOUT_REFUND,
            f"{label}: the Deriv debit of {_money(amount, 'USD')} is booked, its refund transfer is not",
            tx,
        )
    else:
        if status == S.COMPLETED.value:
            expected_mpesa = amount if is_deposit else -converted
            expected_deriv = -converted if is_deposit else amount
        else:  # REVERSED
            expected_mpesa = mpesa if is_deposit else 0
            expected_deriv = 0
        if mpesa != expected_mpesa or deriv != expected_deriv or other:
            out.violation(
                Code.FLOAT_MOVEMENT_MISMATCH,
                f"{label}: M-Pesa float moved {_money(mpesa, 'KES')} "
                f"(expected {_money(expected_mpesa, 'KES')}), "
                f"Deriv agent float {_money(deriv, 'USD')} (expected {_money(expected_deriv, 'USD')})"
                + (f", other floats {_money(other)}" if other else ""),
                tx,
            )
    if wallet_kes or wallet_usd:
        message = (
            f"{label}: the user's wallets are left changed (KES {_money(-wallet_kes)}, "
            f"USD {_money(-wallet_usd)}, credit-normal)"
        )
        if status == S.REVERSED.value and is_deposit:
            out.warning(WarningCode.REVERSED_DEPOSIT_KES_KEPT, message, tx)
        else:
            out.violation(Code.WALLET_NOT_SETTLED, message, tx)
    if status == S.REVERSED.value and is_deposit and mpesa:
        out.warning(
            WarningCode.REVERSED_DEPOSIT_KES_KEPT,
            f"{label}: {_money(mpesa, 'KES')} stays in the M-Pesa float; the refund is not booked",
            tx,
        )


# --- 5. the simulators' books -------------------------------------------------------------


class _TxRow(NamedTuple):
    id: uuid.UUID
    type: str
    status: str
    amount_cents: int
    converted_amount_cents: int | None


async def _load_transactions(
    connection: AsyncConnection, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, _TxRow]:
    found: dict[uuid.UUID, _TxRow] = {}
    unique = sorted(set(ids))
    for chunk in _chunks(unique):
        rows = await connection.execute(
            select(_t.c.id, _t.c.type, _t.c.status, _t.c.amount_cents, _t.c.converted_amount_cents).where(
                _t.c.id.in_(list(chunk))
            )
        )
        for row in rows:
            found[row.id] = _TxRow(
                row.id, row.type, row.status, int(row.amount_cents), _optional_int(row.converted_amount_cents)
            )
    return found


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


async def _ledger_nets(
    connection: AsyncConnection, ids: Iterable[uuid.UUID], column: str
) -> dict[uuid.UUID, int]:
    """Per transaction, one float's net from `_flows` ("mpesa_kes" or "deriv_usd")."""
    nets: dict[uuid.UUID, int] = {}
    for chunk in _chunks(sorted(set(ids))):
        rows = await connection.execute(_flows(_e.c.transaction_id.in_(list(chunk))))
        for row in rows:
            nets[row.tx_id] = _int(getattr(row, column))
    return nets


async def _in_flight_ids(connection: AsyncConnection) -> set[uuid.UUID]:
    rows = await connection.execute(select(_t.c.id).where(_t.c.status.not_in(_TERMINAL)))
    return {row.id for row in rows}


PAYBILL_PREFIX = "C2B-"


async def _paybill_suspense(connection: AsyncConnection) -> dict[str, int]:
    """TransID -> amount of the paybill payments booked to suspense."""
    rows = await connection.execute(
        select(c2b_payments.c.trans_id, c2b_payments.c.amount_cents).where(
            c2b_payments.c.status == "SUSPENSE"
        )
    )
    return {row.trans_id: int(row.amount_cents) for row in rows}


async def _float_totals(connection: AsyncConnection, kind: AccountKind, currency: str) -> tuple[int, int]:
    """(net of the float's entries booked for transactions, stored balance) in debit terms."""
    movement = await connection.scalar(
        select(func.sum(_signed()))
        .select_from(_e.join(_a, _a.c.id == _e.c.account_id))
        .where(_a.c.kind == kind.value, _e.c.amount_currency == currency, _e.c.transaction_id.is_not(None))
    )
    balance = await connection.scalar(
        select(func.sum(_a.c.balance_cents)).where(_a.c.kind == kind.value, _a.c.currency == currency)
    )
    return _int(movement), _int(balance)


def _parse_operation(operation_id: str) -> tuple[uuid.UUID, bool] | None:
    """`<uuid>` -> (uuid, False); `<uuid>-refund` -> (uuid, True); anything else None."""
    refund = operation_id.endswith(REFUND_SUFFIX)
    text = operation_id[: -len(REFUND_SUFFIX)] if refund else operation_id
    try:
        return uuid.UUID(text), refund
    except ValueError:
        return None


async def _check_deriv_books(connection: AsyncConnection, out: _Collector, books: DerivBooks) -> None:
    agent = books.agent_loginid.upper()

    def agent_effect(transfer: DerivBookTransfer) -> int:
        if transfer.from_loginid.upper() == agent:
            return -transfer.amount_cents
        if transfer.to_loginid.upper() == agent:
            return transfer.amount_cents
        return 0

    executed: dict[tuple[uuid.UUID, bool], list[DerivBookTransfer]] = defaultdict(list)
    unreferenced: list[DerivBookTransfer] = []
    for transfer in books.transfers:
        if transfer.operation_id is None:
            unreferenced.append(transfer)
            continue
        parsed = _parse_operation(transfer.operation_id)
        if parsed is None:
            out.violation(
                Code.UNKNOWN_DERIV_REFERENCE,
                f"Deriv transfer {transfer.transfer_id} carries PenPay reference {transfer.operation_id!r}, "
                "which names no transaction",
            )
            continue
        executed[parsed].append(transfer)
    if unreferenced:
        total = sum(agent_effect(t) for t in unreferenced)
        out.warning(
            WarningCode.UNREFERENCED_DERIV_TRANSFER,
            f"{len(unreferenced)} Deriv transfers carry no PenPay reference "
            f"(agent balance effect {_money(total, books.currency)})",
        )

    referenced = {tx_id for tx_id, _ in executed}
    known = await _load_transactions(connection, referenced)
    sim_net: dict[uuid.UUID, int] = defaultdict(int)
    for (tx_id, refund), moves in executed.items():
        operation = f"{tx_id}{REFUND_SUFFIX if refund else ''}"
        sim_net[tx_id] += sum(agent_effect(t) for t in moves)
        tx = known.get(tx_id)
        if tx is None:
            out.violation(
                Code.UNKNOWN_DERIV_REFERENCE,
                f"{len(moves)} Deriv transfers carry reference {operation!r}: no such transaction",
                tx_id,
            )
            continue
        if len(moves) > 1:
            out.violation(
                Code.PAID_TWICE,
                f"Deriv executed operation {operation} {len(moves)} times (transfers "
                f"{', '.join(str(t.transfer_id) for t in moves)})",
                tx_id,
            )
        expected_kind, expected_amount = _expected_deriv_move(tx, refund)
        for move in moves:
            if expected_kind is None or move.kind != expected_kind:
                out.violation(
                    Code.UNEXPECTED_DERIV_TRANSFER,
                    f"Deriv {move.kind} {move.transfer_id} for operation {operation} of a {tx.type.lower()}",
                    tx_id,
                )
            elif expected_amount is not None and move.amount_cents != expected_amount:
                out.violation(
                    Code.BOOKS_AMOUNT_MISMATCH,
                    f"Deriv {move.kind} {move.transfer_id} moved {_money(move.amount_cents, move.currency)}, "
                    f"the transaction {_money(expected_amount, 'USD')}",
                    tx_id,
                )

    # Every completed deposit was transferred, every completed or reversed withdrawal debited,
    # every reversed withdrawal refunded: the transactions the books must know.
    must_have = (
        select(_t.c.id, _t.c.type, _t.c.status)
        .where(
            or_(
                and_(_t.c.type == _DEPOSIT, _t.c.status == S.COMPLETED.value),
                and_(_t.c.type == _WITHDRAWAL, _t.c.status.in_([S.COMPLETED.value, S.REVERSED.value])),
            )
        )
        .order_by(_t.c.id)
    )
    missing: list[tuple[str, str, uuid.UUID]] = []
    async for row in await connection.stream(must_have):
        if (row.id, False) not in executed:
            if row.type == _DEPOSIT:
                missing.append((Code.DERIV_TRANSFER_MISSING, "its transfer to the user", row.id))
            else:
                missing.append((Code.DERIV_WITHDRAWAL_MISSING, "its debit of the user", row.id))
        if row.type == _WITHDRAWAL and row.status == S.REVERSED.value and (row.id, True) not in executed:
            missing.append(
                (Code.REFUND_NOT_EXECUTED, f"its refund transfer ({row.id}{REFUND_SUFFIX})", row.id)
            )
    for code, what, tx_id in missing[: out.max_rows]:
        out.violation(code, f"the Deriv books do not hold {what}", tx_id)
    if len(missing) > out.max_rows:
        out.warning(
            WarningCode.TRUNCATED, f"only the first {out.max_rows} missing Deriv movements are listed"
        )

    # The ledger booked what Deriv executed: per terminal transaction exactly, in flight as a warning.
    in_flight = await _in_flight_ids(connection)
    ledger_net = await _ledger_nets(connection, set(sim_net) | in_flight, "deriv_usd")
    in_flight_difference = 0
    for tx_id in sorted(set(sim_net) | in_flight):
        tx = known.get(tx_id)
        if tx_id in sim_net and tx is None:
            continue  # reported above
        booked, books_moved = ledger_net.get(tx_id, 0), sim_net.get(tx_id, 0)
        if booked == books_moved:
            continue
        message = (
            f"ledger DERIV_AGENT_FLOAT moved {_money(booked, 'USD')} for this transaction, "
            f"the Deriv agent {_money(books_moved, 'USD')}"
        )
        if tx_id in in_flight:
            in_flight_difference += booked - books_moved
            out.warning(WarningCode.IN_FLIGHT_DIFFERENCE, f"in flight: {message}", tx_id)
        else:
            out.violation(Code.DERIV_UNBOOKED, message, tx_id)

    movement, balance = await _float_totals(connection, AccountKind.DERIV_AGENT_FLOAT, books.currency)
    comparison = FloatComparison(
        name="deriv",
        currency=books.currency,
        ledger_movement_cents=movement,
        ledger_balance_cents=balance,
        simulator_opening_cents=books.opening_balance_cents,
        simulator_balance_cents=books.agent_balance_cents,
        in_flight_difference_cents=in_flight_difference,
    )
    out.report.floats.append(comparison)
    if books.adjustments_cents:
        out.warning(
            WarningCode.SIMULATOR_ADJUSTMENTS,
            f"the Deriv agent's balance was adjusted by {_money(books.adjustments_cents, books.currency)} "
            "through the simulator's control API",
        )
    if comparison.unexplained_cents:
        out.violation(
            Code.DERIV_FLOAT_MISMATCH,
            f"ledger DERIV_AGENT_FLOAT moved {_money(movement, books.currency)} for transactions; the Deriv "
            f"agent {agent} went from {_money(books.opening_balance_cents)} to "
            f"{_money(books.agent_balance_cents)} ({_money(comparison.simulator_change_cents)}); in flight "
            f"{_money(in_flight_difference)}; unexplained {_money(comparison.unexplained_cents)}",
        )


def _expected_deriv_move(tx: _TxRow, refund: bool) -> tuple[str | None, int | None]:
    if tx.type == _DEPOSIT:
        return (None, None) if refund else (DERIV_TRANSFER_KIND, tx.converted_amount_cents)
    if refund:
        return DERIV_TRANSFER_KIND, tx.amount_cents
    return DERIV_WITHDRAW_KIND, tx.amount_cents


async def _deposits_in_review_without_request(
    connection: AsyncConnection,
) -> dict[tuple[str, int], list[uuid.UUID]]:
    """NEEDS_REVIEW deposits that never recorded an STK push answer, by (phone, amount)."""
    rows = await connection.execute(
        select(_t.c.id, _t.c.phone, _t.c.amount_cents)
        .where(
            _t.c.type == _DEPOSIT,
            _t.c.status == S.NEEDS_REVIEW.value,
            ~select(mpesa_requests.c.transaction_id)
            .where(mpesa_requests.c.transaction_id == _t.c.id)
            .exists(),
        )
        .order_by(_t.c.created_at, _t.c.id)
    )
    found: dict[tuple[str, int], list[uuid.UUID]] = defaultdict(list)
    for row in rows:
        found[(str(row.phone), int(row.amount_cents))].append(row.id)
    return found


def _check_refund_payout(out: _Collector, tx: _TxRow, paid: list[B2CPayout], ids: str) -> None:
    """B2C payouts of a deposit: its refund, once, of the whole amount, booked as REVERSED."""
    if len(paid) > 1:
        out.violation(Code.PAID_TWICE, f"M-Pesa paid {len(paid)} refunds ({ids})", tx.id)
    for payout in paid:
        if payout.amount_cents != tx.amount_cents:
            out.violation(
                Code.BOOKS_AMOUNT_MISMATCH,
                f"refund B2C {payout.originator_conversation_id} paid {_money(payout.amount_cents, 'KES')}, "
                f"the deposit was {_money(tx.amount_cents, 'KES')}",
                tx.id,
            )
    if tx.status == S.NEEDS_REVIEW.value:
        out.warning(
            WarningCode.B2C_PAID_PENDING, f"M-Pesa paid refund {ids}; the deposit is in review", tx.id
        )
    elif tx.status != S.REVERSED.value:
        out.violation(
            Code.B2C_PAID_NOT_BOOKED, f"M-Pesa paid refund {ids} but the deposit is {tx.status}", tx.id
        )


async def _check_mpesa_books(connection: AsyncConnection, out: _Collector, books: MpesaBooks) -> None:
    mr = mpesa_requests
    md = mpesa_disbursements
    sim_net: dict[uuid.UUID, int] = defaultdict(int)

    # STK charges -> deposits
    charged = {s.checkout_request_id: s for s in books.stk if s.charged}
    requests: dict[str, Any] = {}
    for chunk in _chunks(sorted(charged)):
        rows = await connection.execute(
            select(
                mr.c.checkout_request_id,
                mr.c.transaction_id,
                mr.c.status,
                mr.c.amount_cents,
                mr.c.mpesa_receipt_number,
                _t.c.type,
                _t.c.status.label("tx_status"),
            )
            .select_from(mr.join(_t, _t.c.id == mr.c.transaction_id))
            .where(mr.c.checkout_request_id.in_(list(chunk)))
        )
        for found in rows:
            requests[found.checkout_request_id] = found
    in_review = await _deposits_in_review_without_request(connection)
    suspense = await _paybill_suspense(connection)
    for checkout_id, charge in sorted(charged.items()):
        row = requests.get(checkout_id)
        if row is None and checkout_id.removeprefix(PAYBILL_PREFIX) in suspense:
            out.warning(
                WarningCode.PAYBILL_IN_SUSPENSE,
                f"paybill payment {checkout_id.removeprefix(PAYBILL_PREFIX)} of "
                f"{_money(charge.amount_cents, 'KES')} is held in suspense for a person",
            )
            continue
        if row is None:
            candidates = in_review.get((charge.phone, charge.amount_cents))
            if candidates:
                owner = candidates.pop(0)
                # The push's answer (its CheckoutRequestID) was lost and the deposit is in review
                # for it: the charge is that review's to settle, not money gone astray.
                sim_net[owner] += charge.amount_cents
                out.warning(
                    WarningCode.STK_CHARGE_IN_REVIEW,
                    f"M-Pesa charged {charge.phone} {_money(charge.amount_cents, 'KES')} for STK push "
                    f"{checkout_id}, whose answer the deposit in review never recorded",
                    owner,
                )
                continue
            out.violation(
                Code.STK_CHARGE_UNKNOWN,
                f"M-Pesa charged {charge.phone} {_money(charge.amount_cents, 'KES')} "
                f"for STK push {checkout_id}, "
                "which belongs to no deposit",
            )
            continue
        tx_id = row.transaction_id
        sim_net[tx_id] += charge.amount_cents
        if row.type != _DEPOSIT:
            out.violation(Code.STK_CHARGE_UNKNOWN, f"STK push {checkout_id} belongs to a {row.type}", tx_id)
            continue
        if _int(row.amount_cents) != charge.amount_cents:
            out.violation(
                Code.BOOKS_AMOUNT_MISMATCH,
                f"M-Pesa charged {_money(charge.amount_cents, 'KES')} for STK push {checkout_id}, "
                f"the request was for {_money(_int(row.amount_cents), 'KES')}",
                tx_id,
            )
        if row.status == _CONFIRMED:
            if (
                row.mpesa_receipt_number is not None
                and charge.receipt
                and row.mpesa_receipt_number != charge.receipt
            ):
                out.violation(
                    Code.MPESA_RECEIPT_MISMATCH,
                    f"STK push {checkout_id}: stored receipt {row.mpesa_receipt_number}, "
                    f"M-Pesa issued {charge.receipt}",
                    tx_id,
                )
        elif row.tx_status == S.NEEDS_REVIEW.value:
            pass  # listed under needs_review
        elif row.tx_status in _TERMINAL:
            out.violation(
                Code.STK_CHARGE_UNBOOKED,
                f"M-Pesa charged STK push {checkout_id} but its request is {row.status} and the "
                f"deposit {row.tx_status}",
                tx_id,
            )
        else:
            out.warning(
                WarningCode.STK_CHARGE_PENDING,
                f"M-Pesa charged STK push {checkout_id}; the deposit is still {row.tx_status}",
                tx_id,
            )

    confirmed = select(mr.c.checkout_request_id, mr.c.transaction_id).where(mr.c.status == _CONFIRMED)
    not_charged: list[tuple[str, uuid.UUID]] = []
    async for request in await connection.stream(confirmed):
        if request.checkout_request_id not in charged:
            not_charged.append((request.checkout_request_id, request.transaction_id))
    for checkout_id, tx_id in not_charged[: out.max_rows]:
        out.violation(
            Code.STK_CONFIRMED_NOT_CHARGED,
            f"STK push {checkout_id} is CONFIRMED here and was never charged by M-Pesa",
            tx_id,
        )

    # B2C payouts -> withdrawals
    paid = [b for b in books.b2c if b.paid]
    by_ocid: dict[str, uuid.UUID] = {}
    for chunk in _chunks(sorted({b.originator_conversation_id for b in paid})):
        rows = await connection.execute(
            select(md.c.originator_conversation_id, md.c.transaction_id).where(
                md.c.originator_conversation_id.in_(list(chunk))
            )
        )
        by_ocid.update({row.originator_conversation_id: row.transaction_id for row in rows})
    payouts: dict[uuid.UUID, list[B2CPayout]] = defaultdict(list)
    for payout in paid:
        tx_id = by_ocid.get(payout.originator_conversation_id)
        if tx_id is None and payout.transaction_id is not None:
            try:
                tx_id = uuid.UUID(payout.transaction_id)
            except ValueError:
                tx_id = None
        if tx_id is None:
            out.violation(
                Code.B2C_PAYOUT_UNKNOWN,
                f"M-Pesa paid {payout.phone} {_money(payout.amount_cents, 'KES')} under "
                f"{payout.originator_conversation_id}, which belongs to no withdrawal",
            )
            continue
        payouts[tx_id].append(payout)
    known = await _load_transactions(connection, payouts)
    for tx_id, paid_for_tx in sorted(payouts.items()):
        sim_net[tx_id] -= sum(p.amount_cents for p in paid_for_tx)
        tx = known.get(tx_id)
        ids = ", ".join(p.originator_conversation_id for p in paid_for_tx)
        if tx is not None and tx.type == _DEPOSIT:
            _check_refund_payout(out, tx, paid_for_tx, ids)
            continue
        if tx is None or tx.type != _WITHDRAWAL:
            out.violation(Code.B2C_PAYOUT_UNKNOWN, f"B2C {ids} names no withdrawal ({tx_id})", tx_id)
            continue
        if len(paid_for_tx) > 1:
            out.violation(Code.PAID_TWICE, f"M-Pesa paid {len(paid_for_tx)} B2C payouts ({ids})", tx_id)
        for payout in paid_for_tx:
            if tx.converted_amount_cents is None or payout.amount_cents != tx.converted_amount_cents:
                out.violation(
                    Code.BOOKS_AMOUNT_MISMATCH,
                    f"B2C {payout.originator_conversation_id} paid {_money(payout.amount_cents, 'KES')}, the "
                    f"withdrawal converts to {_money(_int(tx.converted_amount_cents), 'KES')}",
                    tx_id,
                )
        if tx.status in (S.FAILED.value, S.REVERSED.value):
            out.violation(
                Code.B2C_PAID_NOT_BOOKED,
                f"M-Pesa paid B2C {ids} but the withdrawal is {tx.status}",
                tx_id,
            )
        elif tx.status != S.COMPLETED.value:
            out.warning(
                WarningCode.B2C_PAID_PENDING, f"M-Pesa paid B2C {ids}; the withdrawal is {tx.status}", tx_id
            )

    completed = (
        select(_t.c.id, md.c.originator_conversation_id)
        .select_from(_t.join(md, md.c.transaction_id == _t.c.id))
        .where(_t.c.type == _WITHDRAWAL, _t.c.status == S.COMPLETED.value)
    )
    unpaid: list[tuple[uuid.UUID, str]] = []
    async for done in await connection.stream(completed):
        if not any(
            p.originator_conversation_id == done.originator_conversation_id for p in payouts.get(done.id, [])
        ):
            unpaid.append((done.id, done.originator_conversation_id))
    for tx_id, ocid in unpaid[: out.max_rows]:
        out.violation(Code.B2C_NOT_PAID, f"COMPLETED withdrawal: M-Pesa never paid B2C {ocid}", tx_id)

    # The ledger's M-Pesa float beside the utility account.
    in_flight = await _in_flight_ids(connection)
    ledger_net = await _ledger_nets(connection, in_flight, "mpesa_kes")
    in_flight_difference = sum(ledger_net.get(t, 0) - sim_net.get(t, 0) for t in in_flight)
    movement, balance = await _float_totals(connection, AccountKind.MPESA_FLOAT, "KES")
    movement += sum(suspense.values())  # paybill money booked to suspense, with no transaction
    comparison = FloatComparison(
        name="mpesa",
        currency="KES",
        ledger_movement_cents=movement,
        ledger_balance_cents=balance,
        simulator_opening_cents=books.opening_utility_cents,
        simulator_balance_cents=books.utility_cents,
        in_flight_difference_cents=in_flight_difference,
    )
    out.report.floats.append(comparison)
    if comparison.unexplained_cents:
        out.violation(
            Code.MPESA_FLOAT_MISMATCH,
            f"ledger MPESA_FLOAT moved {_money(movement, 'KES')} for transactions; "
            "the M-Pesa utility account "
            f"went from {_money(books.opening_utility_cents)} to {_money(books.utility_cents)} "
            f"({_money(comparison.simulator_change_cents)}); in flight {_money(in_flight_difference)}; "
            f"unexplained {_money(comparison.unexplained_cents)}",
        )


__all__ = [
    "DEFAULT_STALE_AFTER",
    "B2CPayout",
    "Code",
    "ConsistencyReport",
    "DerivBookTransfer",
    "DerivBooks",
    "FloatComparison",
    "MpesaBooks",
    "ReviewItem",
    "SimulatorBooks",
    "StkCharge",
    "UnresolvedTransaction",
    "Violation",
    "WarningCode",
    "check_consistency",
]

"""Transactions and their attachment rows (the evidence each status needs).

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
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from domain.payments.status import TransactionStatus as S
from persistence.consistency.collector import Collector, money
from persistence.consistency.queries import CONFIRMED, DEPOSIT, WITHDRAWAL, as_int
from persistence.consistency.report import Code, WarningCode
from persistence.tables import deriv_transfers, deriv_withdrawals, mpesa_disbursements, mpesa_requests
from persistence.tables import transactions as _t


async def check_evidence(connection: AsyncConnection, out: Collector) -> None:
    mr, dt, dw, md = (
        mpesa_requests.alias("mr"),
        deriv_transfers.alias("dt"),
        deriv_withdrawals.alias("dw"),
        mpesa_disbursements.alias("md"),
    )
    deposit, withdrawal = _t.c.type == DEPOSIT, _t.c.type == WITHDRAWAL
    completed, failed, reversed_ = (
        _t.c.status == S.COMPLETED.value,
        _t.c.status == S.FAILED.value,
        _t.c.status == S.REVERSED.value,
    )
    converted = _t.c.converted_amount_cents

    def confirmed(alias: Any) -> ColumnElement[bool]:
        return and_(alias.c.transaction_id.is_not(None), alias.c.status == CONFIRMED)

    def not_confirmed(alias: Any, with_deriv_id: bool = False) -> ColumnElement[bool]:
        conditions = [alias.c.transaction_id.is_(None), alias.c.status != CONFIRMED]
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


def _classify_evidence(out: Collector, row: Any) -> None:
    tx, status, amount, converted = row.id, row.status, as_int(row.amount_cents), row.converted_amount_cents
    is_deposit = row.type == DEPOSIT
    mr_ok = row.mr_id is not None and row.mr_status == CONFIRMED
    dt_ok = row.dt_id is not None and row.dt_status == CONFIRMED
    dw_ok = row.dw_id is not None and row.dw_status == CONFIRMED
    md_ok = row.md_id is not None and row.md_status == CONFIRMED

    def amount_check(ok: bool, found: Any, expected: Any, what: str) -> None:
        if ok and (expected is None or as_int(found) != as_int(expected)):
            out.violation(
                Code.EVIDENCE_AMOUNT_MISMATCH,
                f"{what} is for {money(as_int(found))}, the transaction for "
                f"{'nothing' if expected is None else money(as_int(expected))}",
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

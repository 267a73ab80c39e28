"""The database against the M-Pesa simulator's books (books.MpesaBooks).

  PAID_TWICE              more than one B2C paid for one withdrawal (or one deposit's refund)
  BOOKS_AMOUNT_MISMATCH   M-Pesa charged or paid another amount than the transaction's
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
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.payments.status import TransactionStatus as S
from domain.payments.transaction import LISTED_REQUEST_PREFIX
from domain.wallet.account_kind import AccountKind
from persistence.consistency.books import B2CPayout, MpesaBooks
from persistence.consistency.collector import Collector, money
from persistence.consistency.queries import (
    CONFIRMED,
    DEPOSIT,
    TERMINAL,
    WITHDRAWAL,
    TxRow,
    as_int,
    chunks,
    float_totals,
    in_flight_ids,
    ledger_nets,
    load_transactions,
)
from persistence.consistency.report import Code, FloatComparison, WarningCode
from persistence.tables import c2b_payments, mpesa_disbursements, mpesa_requests
from persistence.tables import transactions as _t

PAYBILL_PREFIX = "C2B-"


def charge_name(checkout_id: str) -> str:
    """A charge as a report names it: a paybill payment by its TransID (under `C2B-<TransID>` in the
    books), else the STK push by its CheckoutRequestID."""
    if checkout_id.startswith(PAYBILL_PREFIX):
        return f"paybill payment {checkout_id.removeprefix(PAYBILL_PREFIX)}"
    return f"STK push {checkout_id}"


async def paybill_suspense(connection: AsyncConnection) -> dict[str, int]:
    """TransID -> amount of the paybill payments booked to suspense."""
    rows = await connection.execute(
        select(c2b_payments.c.trans_id, c2b_payments.c.amount_cents).where(
            c2b_payments.c.status == "SUSPENSE"
        )
    )
    return {row.trans_id: int(row.amount_cents) for row in rows}


async def _deposits_in_review_without_request(
    connection: AsyncConnection,
) -> dict[tuple[str, int], list[uuid.UUID]]:
    """NEEDS_REVIEW deposits that never recorded an STK push answer, by (phone, amount)."""
    rows = await connection.execute(
        select(_t.c.id, _t.c.phone, _t.c.amount_cents)
        .where(
            _t.c.type == DEPOSIT,
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


def _check_refund_payout(out: Collector, tx: TxRow, paid: list[B2CPayout], ids: str) -> None:
    """B2C payouts of a deposit: its refund, once, of the whole amount, booked as REVERSED."""
    if len(paid) > 1:
        out.violation(Code.PAID_TWICE, f"M-Pesa paid {len(paid)} refunds ({ids})", tx.id)
    for payout in paid:
        if payout.amount_cents != tx.amount_cents:
            out.violation(
                Code.BOOKS_AMOUNT_MISMATCH,
                f"refund B2C {payout.originator_conversation_id} paid {money(payout.amount_cents, 'KES')}, "
                f"the deposit was {money(tx.amount_cents, 'KES')}",
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


async def check_mpesa_books(connection: AsyncConnection, out: Collector, books: MpesaBooks) -> None:
    mr = mpesa_requests
    md = mpesa_disbursements
    sim_net: dict[uuid.UUID, int] = defaultdict(int)

    # STK charges -> deposits
    charged = {s.checkout_request_id: s for s in books.stk if s.charged}
    # A lost push's payment taken in on M-Pesa's list alone is held under PULL-<receipt>.
    listed = {
        f"{LISTED_REQUEST_PREFIX}{s.receipt}": s.checkout_request_id for s in charged.values() if s.receipt
    }
    requests: dict[str, Any] = {}
    for chunk in chunks(sorted([*charged, *listed])):
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
            charge_id = listed.get(found.checkout_request_id, found.checkout_request_id)
            held = requests.get(charge_id)
            if held is not None and held.transaction_id != found.transaction_id:
                out.violation(
                    Code.PAID_TWICE,
                    f"{charge_name(charge_id)} is held by two deposits "
                    f"({held.checkout_request_id} and {found.checkout_request_id})",
                    found.transaction_id,
                )
            requests[charge_id] = found
    in_review = await _deposits_in_review_without_request(connection)
    suspense = await paybill_suspense(connection)
    for checkout_id, charge in sorted(charged.items()):
        row = requests.get(checkout_id)
        if row is None and checkout_id.removeprefix(PAYBILL_PREFIX) in suspense:
            out.warning(
                WarningCode.PAYBILL_IN_SUSPENSE,
                f"{charge_name(checkout_id)} of "
                f"{money(charge.amount_cents, 'KES')} is held in suspense for a person",
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
                    f"M-Pesa charged {charge.phone} {money(charge.amount_cents, 'KES')} for "
                    f"{charge_name(checkout_id)}, whose answer the deposit in review never recorded",
                    owner,
                )
                continue
            out.violation(
                Code.STK_CHARGE_UNKNOWN,
                f"M-Pesa charged {charge.phone} {money(charge.amount_cents, 'KES')} "
                f"for {charge_name(checkout_id)}, "
                "which belongs to no deposit",
            )
            continue
        tx_id = row.transaction_id
        sim_net[tx_id] += charge.amount_cents
        if row.type != DEPOSIT:
            out.violation(
                Code.STK_CHARGE_UNKNOWN, f"{charge_name(checkout_id)} belongs to a {row.type}", tx_id
            )
            continue
        if as_int(row.amount_cents) != charge.amount_cents:
            out.violation(
                Code.BOOKS_AMOUNT_MISMATCH,
                f"M-Pesa charged {money(charge.amount_cents, 'KES')} for {charge_name(checkout_id)}, "
                f"the request was for {money(as_int(row.amount_cents), 'KES')}",
                tx_id,
            )
        if row.status == CONFIRMED:
            if (
                row.mpesa_receipt_number is not None
                and charge.receipt
                and row.mpesa_receipt_number != charge.receipt
            ):
                out.violation(
                    Code.MPESA_RECEIPT_MISMATCH,
                    f"{charge_name(checkout_id)}: stored receipt {row.mpesa_receipt_number}, "
                    f"M-Pesa issued {charge.receipt}",
                    tx_id,
                )
        elif row.tx_status == S.NEEDS_REVIEW.value:
            pass  # listed under needs_review
        elif row.tx_status in TERMINAL:
            out.violation(
                Code.STK_CHARGE_UNBOOKED,
                f"M-Pesa charged {charge_name(checkout_id)} but its request is {row.status} and the "
                f"deposit {row.tx_status}",
                tx_id,
            )
        else:
            out.warning(
                WarningCode.STK_CHARGE_PENDING,
                f"M-Pesa charged {charge_name(checkout_id)}; the deposit is still {row.tx_status}",
                tx_id,
            )

    confirmed = select(mr.c.checkout_request_id, mr.c.transaction_id).where(mr.c.status == CONFIRMED)
    not_charged: list[tuple[str, uuid.UUID]] = []
    async for request in await connection.stream(confirmed):
        if request.checkout_request_id not in charged and request.checkout_request_id not in listed:
            not_charged.append((request.checkout_request_id, request.transaction_id))
    for checkout_id, tx_id in not_charged[: out.max_rows]:
        out.violation(
            Code.STK_CONFIRMED_NOT_CHARGED,
            f"{charge_name(checkout_id)} is CONFIRMED here and was never charged by M-Pesa",
            tx_id,
        )

    # B2C payouts -> withdrawals
    paid = [b for b in books.b2c if b.paid]
    by_ocid: dict[str, uuid.UUID] = {}
    for chunk in chunks(sorted({b.originator_conversation_id for b in paid})):
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
                f"M-Pesa paid {payout.phone} {money(payout.amount_cents, 'KES')} under "
                f"{payout.originator_conversation_id}, which belongs to no withdrawal",
            )
            continue
        payouts[tx_id].append(payout)
    known = await load_transactions(connection, payouts)
    for tx_id, paid_for_tx in sorted(payouts.items()):
        sim_net[tx_id] -= sum(p.amount_cents for p in paid_for_tx)
        tx = known.get(tx_id)
        ids = ", ".join(p.originator_conversation_id for p in paid_for_tx)
        if tx is not None and tx.type == DEPOSIT:
            _check_refund_payout(out, tx, paid_for_tx, ids)
            continue
        if tx is None or tx.type != WITHDRAWAL:
            out.violation(Code.B2C_PAYOUT_UNKNOWN, f"B2C {ids} names no withdrawal ({tx_id})", tx_id)
            continue
        if len(paid_for_tx) > 1:
            out.violation(Code.PAID_TWICE, f"M-Pesa paid {len(paid_for_tx)} B2C payouts ({ids})", tx_id)
        for payout in paid_for_tx:
            if tx.converted_amount_cents is None or payout.amount_cents != tx.converted_amount_cents:
                out.violation(
                    Code.BOOKS_AMOUNT_MISMATCH,
                    f"B2C {payout.originator_conversation_id} paid {money(payout.amount_cents, 'KES')}, the "
                    f"withdrawal converts to {money(as_int(tx.converted_amount_cents), 'KES')}",
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
        .where(_t.c.type == WITHDRAWAL, _t.c.status == S.COMPLETED.value)
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
    in_flight = await in_flight_ids(connection)
    ledger_net = await ledger_nets(connection, in_flight, "mpesa_kes")
    in_flight_difference = sum(ledger_net.get(t, 0) - sim_net.get(t, 0) for t in in_flight)
    movement, balance = await float_totals(connection, AccountKind.MPESA_FLOAT, "KES")
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
            f"ledger MPESA_FLOAT moved {money(movement, 'KES')} for transactions; "
            "the M-Pesa utility account "
            f"went from {money(books.opening_utility_cents)} to {money(books.utility_cents)} "
            f"({money(comparison.simulator_change_cents)}); in flight {money(in_flight_difference)}; "
            f"unexplained {money(comparison.unexplained_cents)}",
        )

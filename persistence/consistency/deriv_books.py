"""The database against the Deriv simulator's books (books.DerivBooks).

PAID_TWICE              one PenPay operation executed more than once on Deriv (same reference)
DERIV_TRANSFER_MISSING  COMPLETED deposit whose transfer is not in the Deriv books
DERIV_WITHDRAWAL_MISSING  COMPLETED/REVERSED withdrawal whose debit is not in the Deriv books
REFUND_NOT_EXECUTED     REVERSED withdrawal whose refund (`<id>-refund`) is not in the books
BOOKS_AMOUNT_MISMATCH   Deriv executed another amount than the transaction's
UNKNOWN_DERIV_REFERENCE a Deriv transfer carries a PenPay reference to no transaction
UNEXPECTED_DERIV_TRANSFER  a Deriv movement of the wrong kind for its transaction
DERIV_UNBOOKED          terminal transaction: the Deriv agent's movements for it differ
                        from its ledger's DERIV_AGENT_FLOAT movements
DERIV_FLOAT_MISMATCH    ledger DERIV_AGENT_FLOAT USD movements (postings with a transaction)
                        != the agent's balance change in the simulator (current - opening),
                        beyond what in-flight transactions explain
"""

from __future__ import annotations

import uuid
from collections import defaultdict

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.payments.status import TransactionStatus as S
from domain.wallet.account_kind import AccountKind
from persistence.consistency.books import (
    DERIV_TRANSFER_KIND,
    DERIV_WITHDRAW_KIND,
    REFUND_SUFFIX,
    DerivBooks,
    DerivBookTransfer,
)
from persistence.consistency.collector import Collector, money
from persistence.consistency.queries import (
    DEPOSIT,
    WITHDRAWAL,
    TxRow,
    float_totals,
    in_flight_ids,
    ledger_nets,
    load_transactions,
)
from persistence.consistency.report import Code, FloatComparison, WarningCode
from persistence.tables import transactions as _t


def _parse_operation(operation_id: str) -> tuple[uuid.UUID, bool] | None:
    """`<uuid>` -> (uuid, False); `<uuid>-refund` -> (uuid, True); anything else None."""
    refund = operation_id.endswith(REFUND_SUFFIX)
    text = operation_id[: -len(REFUND_SUFFIX)] if refund else operation_id
    try:
        return uuid.UUID(text), refund
    except ValueError:
        return None


async def check_deriv_books(connection: AsyncConnection, out: Collector, books: DerivBooks) -> None:
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
            f"(agent balance effect {money(total, books.currency)})",
        )

    referenced = {tx_id for tx_id, _ in executed}
    known = await load_transactions(connection, referenced)
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
                    f"Deriv {move.kind} {move.transfer_id} moved {money(move.amount_cents, move.currency)}, "
                    f"the transaction {money(expected_amount, 'USD')}",
                    tx_id,
                )

    # Every completed deposit was transferred, every completed or reversed withdrawal debited,
    # every reversed withdrawal refunded: the transactions the books must know.
    must_have = (
        select(_t.c.id, _t.c.type, _t.c.status)
        .where(
            or_(
                and_(_t.c.type == DEPOSIT, _t.c.status == S.COMPLETED.value),
                and_(_t.c.type == WITHDRAWAL, _t.c.status.in_([S.COMPLETED.value, S.REVERSED.value])),
            )
        )
        .order_by(_t.c.id)
    )
    missing: list[tuple[str, str, uuid.UUID]] = []
    async for row in await connection.stream(must_have):
        if (row.id, False) not in executed:
            if row.type == DEPOSIT:
                missing.append((Code.DERIV_TRANSFER_MISSING, "its transfer to the user", row.id))
            else:
                missing.append((Code.DERIV_WITHDRAWAL_MISSING, "its debit of the user", row.id))
        if row.type == WITHDRAWAL and row.status == S.REVERSED.value and (row.id, True) not in executed:
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
    in_flight = await in_flight_ids(connection)
    ledger_net = await ledger_nets(connection, set(sim_net) | in_flight, "deriv_usd")
    in_flight_difference = 0
    for tx_id in sorted(set(sim_net) | in_flight):
        tx = known.get(tx_id)
        if tx_id in sim_net and tx is None:
            continue  # reported above
        booked, books_moved = ledger_net.get(tx_id, 0), sim_net.get(tx_id, 0)
        if booked == books_moved:
            continue
        message = (
            f"ledger DERIV_AGENT_FLOAT moved {money(booked, 'USD')} for this transaction, "
            f"the Deriv agent {money(books_moved, 'USD')}"
        )
        if tx_id in in_flight:
            in_flight_difference += booked - books_moved
            out.warning(WarningCode.IN_FLIGHT_DIFFERENCE, f"in flight: {message}", tx_id)
        else:
            out.violation(Code.DERIV_UNBOOKED, message, tx_id)

    movement, balance = await float_totals(connection, AccountKind.DERIV_AGENT_FLOAT, books.currency)
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
            f"the Deriv agent's balance was adjusted by {money(books.adjustments_cents, books.currency)} "
            "through the simulator's control API",
        )
    if comparison.unexplained_cents:
        out.violation(
            Code.DERIV_FLOAT_MISMATCH,
            f"ledger DERIV_AGENT_FLOAT moved {money(movement, books.currency)} for transactions; the Deriv "
            f"agent {agent} went from {money(books.opening_balance_cents)} to "
            f"{money(books.agent_balance_cents)} ({money(comparison.simulator_change_cents)}); in flight "
            f"{money(in_flight_difference)}; unexplained {money(comparison.unexplained_cents)}",
        )


def _expected_deriv_move(tx: TxRow, refund: bool) -> tuple[str | None, int | None]:
    if tx.type == DEPOSIT:
        return (None, None) if refund else (DERIV_TRANSFER_KIND, tx.converted_amount_cents)
    if refund:
        return DERIV_TRANSFER_KIND, tx.amount_cents
    return DERIV_WITHDRAW_KIND, tx.amount_cents

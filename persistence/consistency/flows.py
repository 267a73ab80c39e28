"""The ledger of each terminal transaction (its postings' transaction_id): the floats moved as its
type and status say, and the user's wallets are settled.

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
  Codes: FLOAT_MOVEMENT_MISMATCH, FAILED_FLOAT_MOVED, REVERSAL_WITHOUT_REFUND, WALLET_NOT_SETTLED.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, case, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.payments.status import TransactionStatus as S
from persistence.consistency.collector import Collector, money
from persistence.consistency.queries import DEPOSIT, TERMINAL, WITHDRAWAL, as_int, flows_by_transaction
from persistence.consistency.report import Code, WarningCode
from persistence.tables import transactions as _t


async def check_flows(connection: AsyncConnection, out: Collector) -> None:
    flows = flows_by_transaction().subquery("flows")
    mpesa = func.coalesce(flows.c.mpesa_kes, 0)
    deriv = func.coalesce(flows.c.deriv_usd, 0)
    wallet_kes = func.coalesce(flows.c.wallet_kes, 0)
    wallet_usd = func.coalesce(flows.c.wallet_usd, 0)
    other = func.coalesce(flows.c.float_other, 0)
    converted = func.coalesce(_t.c.converted_amount_cents, 0)
    deposit, withdrawal = _t.c.type == DEPOSIT, _t.c.type == WITHDRAWAL
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
            _t.c.status.in_(TERMINAL),
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


def _classify_flows(out: Collector, row: Any) -> None:
    tx, status, kind = row.id, row.status, row.type
    amount, converted = as_int(row.amount_cents), as_int(row.converted_amount_cents)
    mpesa, deriv = as_int(row.mpesa), as_int(row.deriv)
    wallet_kes, wallet_usd, other = as_int(row.wallet_kes), as_int(row.wallet_usd), as_int(row.other)
    is_deposit = kind == DEPOSIT
    label = f"{status} {kind.lower()}"

    if status == S.FAILED.value:
        if mpesa or deriv or other:
            out.violation(
                Code.FAILED_FLOAT_MOVED,
                f"{label}: the floats moved (M-Pesa {money(mpesa, 'KES')}, Deriv agent "
                f"{money(deriv, 'USD')}, other {money(other)}); a failed transaction moves no money",
                tx,
            )
    elif status == S.REVERSED.value and not is_deposit and deriv == amount and mpesa == 0:
        out.violation(
            Code.REVERSAL_WITHOUT_REFUND,
            f"{label}: the Deriv debit of {money(amount, 'USD')} is booked, its refund transfer is not",
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
                f"{label}: M-Pesa float moved {money(mpesa, 'KES')} "
                f"(expected {money(expected_mpesa, 'KES')}), "
                f"Deriv agent float {money(deriv, 'USD')} (expected {money(expected_deriv, 'USD')})"
                + (f", other floats {money(other)}" if other else ""),
                tx,
            )
    if wallet_kes or wallet_usd:
        message = (
            f"{label}: the user's wallets are left changed (KES {money(-wallet_kes)}, "
            f"USD {money(-wallet_usd)}, credit-normal)"
        )
        if status == S.REVERSED.value and is_deposit:
            out.warning(WarningCode.REVERSED_DEPOSIT_KES_KEPT, message, tx)
        else:
            out.violation(Code.WALLET_NOT_SETTLED, message, tx)
    if status == S.REVERSED.value and is_deposit and mpesa:
        out.warning(
            WarningCode.REVERSED_DEPOSIT_KES_KEPT,
            f"{label}: {money(mpesa, 'KES')} stays in the M-Pesa float; the refund is not booked",
            tx,
        )

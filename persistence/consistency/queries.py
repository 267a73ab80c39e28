"""SQL building blocks and shared look-ups of the checks (Core statements; one connection)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from sqlalchemy import and_, case, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from domain.payments.status import TERMINAL_STATUSES, TransactionType
from domain.wallet.account_kind import AccountKind, LedgerSide
from persistence import ledger_balances
from persistence.tables import ledger_accounts as _a
from persistence.tables import ledger_entries as _e
from persistence.tables import transactions as _t

CHUNK = 500  # ids per IN (...) look-up
DEBIT = LedgerSide.DEBIT.value
CREDIT = LedgerSide.CREDIT.value
TERMINAL = sorted(s.value for s in TERMINAL_STATUSES)
DEPOSIT = TransactionType.DEPOSIT.value
WITHDRAWAL = TransactionType.WITHDRAWAL.value
CONFIRMED = "CONFIRMED"
FLOATS = (AccountKind.MPESA_FLOAT.value, AccountKind.DERIV_AGENT_FLOAT.value)
NO_OVERDRAFT_KINDS = sorted(k.value for k in AccountKind if k.default_no_overdraft)


def signed() -> ColumnElement[Any]:
    """An entry's effect as DEBIT minus CREDIT."""
    return case((_e.c.side == DEBIT, _e.c.amount_cents), else_=-_e.c.amount_cents)


def net_where(*conditions: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((and_(*conditions), signed()), else_=0))


def flows_by_transaction(*where: ColumnElement[bool]) -> Any:
    """Per transaction: the nets of the floats and of the user wallets, by currency."""
    kind, cur = _a.c.kind, _e.c.amount_currency
    mpesa = and_(kind == AccountKind.MPESA_FLOAT.value, cur == "KES")
    deriv = and_(kind == AccountKind.DERIV_AGENT_FLOAT.value, cur == "USD")
    statement = (
        select(
            _e.c.transaction_id.label("tx_id"),
            net_where(mpesa).label("mpesa_kes"),
            net_where(deriv).label("deriv_usd"),
            net_where(kind == AccountKind.USER_WALLET.value, cur == "KES").label("wallet_kes"),
            net_where(kind == AccountKind.USER_WALLET.value, cur == "USD").label("wallet_usd"),
            func.sum(
                case(
                    (and_(kind.in_(FLOATS), not_(or_(mpesa, deriv))), _e.c.amount_cents),
                    else_=0,
                )
            ).label("float_other"),
        )
        .select_from(_e.join(_a, _a.c.id == _e.c.account_id))
        .where(_e.c.transaction_id.is_not(None), *where)
        .group_by(_e.c.transaction_id)
    )
    return statement


def as_int(value: Any) -> int:
    return 0 if value is None else int(value)


def _tx(value: Any) -> str | None:
    return None if value is None else str(value)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class TxRow(NamedTuple):
    id: uuid.UUID
    type: str
    status: str
    amount_cents: int
    converted_amount_cents: int | None


async def load_transactions(connection: AsyncConnection, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, TxRow]:
    found: dict[uuid.UUID, TxRow] = {}
    unique = sorted(set(ids))
    for chunk in chunks(unique):
        rows = await connection.execute(
            select(_t.c.id, _t.c.type, _t.c.status, _t.c.amount_cents, _t.c.converted_amount_cents).where(
                _t.c.id.in_(list(chunk))
            )
        )
        for row in rows:
            found[row.id] = TxRow(
                row.id, row.type, row.status, int(row.amount_cents), _optional_int(row.converted_amount_cents)
            )
    return found


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


async def ledger_nets(
    connection: AsyncConnection, ids: Iterable[uuid.UUID], column: str
) -> dict[uuid.UUID, int]:
    """Per transaction, one float's net from `flows_by_transaction` ("mpesa_kes" or "deriv_usd")."""
    nets: dict[uuid.UUID, int] = {}
    for chunk in chunks(sorted(set(ids))):
        rows = await connection.execute(flows_by_transaction(_e.c.transaction_id.in_(list(chunk))))
        for row in rows:
            nets[row.tx_id] = as_int(getattr(row, column))
    return nets


async def in_flight_ids(connection: AsyncConnection) -> set[uuid.UUID]:
    rows = await connection.execute(select(_t.c.id).where(_t.c.status.not_in(TERMINAL)))
    return {row.id for row in rows}


async def float_totals(connection: AsyncConnection, kind: AccountKind, currency: str) -> tuple[int, int]:
    """(net of the float's entries booked for transactions, stored balance) in debit terms."""
    movement = await connection.scalar(
        select(func.sum(signed()))
        .select_from(_e.join(_a, _a.c.id == _e.c.account_id))
        .where(_a.c.kind == kind.value, _e.c.amount_currency == currency, _e.c.transaction_id.is_not(None))
    )
    float_rows = (_a.c.kind == kind.value, _a.c.currency == currency)
    balance = await connection.scalar(
        select(func.sum(_a.c.balance_cents) + ledger_balances.unrolled_total(*float_rows)).where(*float_rows)
    )
    return as_int(movement), as_int(balance)

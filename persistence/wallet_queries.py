"""SqlWalletReadModel: application.wallet.queries.WalletReadModel on the ledger tables.

Every statement filters on ledger_accounts.kind = USER_WALLET and ledger_accounts.user_id, so
a query can only ever see the given user's wallet accounts. Reads run in a short read-only
connection each (no locks: balances may move right after, which is what a read model shows).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.wallet.queries import EntryCursor, PeriodTotals, WalletBalance, WalletEntry
from domain.shared.ids import LedgerAccountId, LedgerEntryId, TransactionId, UserId
from domain.wallet.account_kind import AccountKind, LedgerSide
from domain.wallet.money import Currency, Money
from persistence.tables import ledger_accounts, ledger_entries, ledger_postings

_a, _e, _p = ledger_accounts, ledger_entries, ledger_postings

# +amount when the entry is on the account's normal side (a wallet: CREDIT), -amount otherwise.
_CHANGE = case((_e.c.side == _a.c.normal_side, _e.c.amount_cents), else_=-_e.c.amount_cents)
_WALLETS = _a.c.kind == AccountKind.USER_WALLET.value


def _entry(row: Any) -> WalletEntry:
    currency = Currency(row.amount_currency)
    return WalletEntry(
        ledger_entry_id=LedgerEntryId(row.id),
        ledger_account_id=LedgerAccountId(row.account_id),
        transaction_id=TransactionId(row.transaction_id) if row.transaction_id is not None else None,
        side=LedgerSide(row.side),
        amount=Money(int(row.amount_cents), currency),
        balance_change_minor=int(row.change),
        description=row.description,
        created_at=row.created_at,
    )


class SqlWalletReadModel:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def balances(self, user_id: UserId) -> list[WalletBalance]:
        statement = (
            select(_a.c.id, _a.c.currency, _a.c.balance_cents, _a.c.updated_at)
            .where(_WALLETS, _a.c.user_id == user_id.value)
            .order_by(_a.c.currency)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [
            WalletBalance(
                ledger_account_id=LedgerAccountId(row.id),
                balance=Money(int(row.balance_cents), Currency(row.currency)),
                updated_at=row.updated_at,
            )
            for row in rows
        ]

    async def entries(
        self,
        user_id: UserId,
        *,
        currency: Currency | None,
        limit: int,
        before: EntryCursor | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        oldest_first: bool = False,
    ) -> list[WalletEntry]:
        conditions: list[Any] = [_WALLETS, _a.c.user_id == user_id.value]
        if currency is not None:
            conditions.append(_a.c.currency == currency.value)
        if before is not None:
            conditions.append(
                or_(
                    _e.c.created_at < before.created_at,
                    and_(_e.c.created_at == before.created_at, _e.c.id < before.entry_id),
                )
            )
        if start is not None:
            conditions.append(_e.c.created_at >= start)
        if end is not None:
            conditions.append(_e.c.created_at < end)
        order = (_e.c.created_at, _e.c.id) if oldest_first else (_e.c.created_at.desc(), _e.c.id.desc())
        statement = (
            select(
                _e.c.id,
                _e.c.account_id,
                _e.c.transaction_id,
                _e.c.side,
                _e.c.amount_cents,
                _e.c.amount_currency,
                _e.c.created_at,
                _CHANGE.label("change"),
                _p.c.description,
            )
            .select_from(_e.join(_a, _a.c.id == _e.c.account_id).join(_p, _p.c.id == _e.c.posting_id))
            .where(*conditions)
            .order_by(*order)
            .limit(limit)
        )
        async with self._engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [_entry(row) for row in rows]

    async def totals(
        self, user_id: UserId, currency: Currency, *, start: datetime | None, end: datetime
    ) -> PeriodTotals:
        conditions: list[Any] = [
            _WALLETS,
            _a.c.user_id == user_id.value,
            _a.c.currency == currency.value,
            _e.c.created_at < end,
        ]
        if start is not None:
            conditions.append(_e.c.created_at >= start)
        credit = LedgerSide.CREDIT.value
        statement = (
            select(
                func.coalesce(func.sum(case((_e.c.side == credit, _e.c.amount_cents), else_=0)), 0),
                func.coalesce(func.sum(case((_e.c.side != credit, _e.c.amount_cents), else_=0)), 0),
                func.coalesce(func.sum(_CHANGE), 0),
            )
            .select_from(_e.join(_a, _a.c.id == _e.c.account_id))
            .where(*conditions)
        )
        async with self._engine.connect() as connection:
            credits, debits, change = (await connection.execute(statement)).one()
        return PeriodTotals(int(credits), int(debits), int(change))

"""Setting up ledger accounts and reading the ledger back, for the persistence tests."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ledger import book
from domain.shared.ids import UserId
from domain.wallet.account_kind import AccountKind, LedgerSide
from domain.wallet.ledger_account import LedgerAccount
from domain.wallet.ledger_entry import credit, debit
from domain.wallet.money import Currency, Money
from domain.wallet.posting import Posting
from persistence import ledger_balances
from persistence.tables import ledger_accounts, ledger_entries, users
from persistence.unit_of_work import SqlUnitOfWork

REGISTERED_AT = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)  # every user row's stamp: nothing here reads it


async def insert_user(engine: AsyncEngine) -> UserId:
    user_id = UserId.new()
    now = REGISTERED_AT
    async with engine.begin() as connection:
        await connection.execute(
            users.insert(),
            {
                "id": user_id.value,
                "email": f"{user_id.value.hex}@example.test",
                "phone": "2547" + str(user_id.value.int % 10**8).zfill(8),
                "password_hash": "x",
                "email_verified": False,
                "status": "ACTIVE",
                "roles": "user",
                "version": 1,
                "created_at": now,
                "updated_at": now,
            },
        )
    return user_id


async def wallet_and_float(
    engine: AsyncEngine, currency: Currency = Currency.KES
) -> tuple[LedgerAccount, LedgerAccount]:
    """A fresh user's wallet and the system M-Pesa float, both created if missing."""
    user_id = await insert_user(engine)
    async with SqlUnitOfWork(engine) as uow:
        wallet = await uow.ledger.get_or_create_account(
            kind=AccountKind.USER_WALLET, currency=currency, user_id=user_id
        )
        float_account = await uow.ledger.get_or_create_account(
            kind=AccountKind.MPESA_FLOAT, currency=currency
        )
        await uow.commit()
    return wallet, float_account


async def fund(engine: AsyncEngine, wallet: LedgerAccount, float_account: LedgerAccount, minor: int) -> None:
    """Money arrives at M-Pesa for the user: the float (asset) and the wallet (owed) both grow."""
    amount = Money(minor, wallet.currency)
    async with SqlUnitOfWork(engine) as uow:
        await book(
            uow,
            Posting.create(
                lines=[debit(float_account.id, amount), credit(wallet.id, amount)], description="fund"
            ),
        )
        await uow.commit()


def pay_out(wallet: LedgerAccount, float_account: LedgerAccount, minor: int) -> Posting:
    amount = Money(minor, wallet.currency)
    return Posting.create(
        lines=[debit(wallet.id, amount), credit(float_account.id, amount)], description="pay out"
    )


async def net_by_currency(engine: AsyncEngine) -> dict[str, int]:
    """debits - credits per currency over every entry ever written: must be 0 for each."""
    amount = ledger_entries.c.amount_cents
    signed = func.sum(case((ledger_entries.c.side == LedgerSide.DEBIT.value, amount), else_=-amount))
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(ledger_entries.c.amount_currency, signed).group_by(ledger_entries.c.amount_currency)
        )
        return {currency: int(total) for currency, total in rows}


async def balance_of(engine: AsyncEngine, account: LedgerAccount) -> int:
    """The balance every reader sees: balance_cents and the changes not yet rolled up."""
    async with engine.connect() as connection:
        statement = select(ledger_balances.balance()).where(ledger_accounts.c.id == account.id.value)
        return int((await connection.execute(statement)).scalar_one())

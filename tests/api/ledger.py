"""Ledger activity for the wallet and ops tests, booked the way the application books it."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from application.ledger import book
from domain.shared.clock import Clock
from domain.shared.ids import UserId
from domain.wallet.account_kind import AccountKind
from domain.wallet.ledger_entry import credit, debit
from domain.wallet.money import Currency, Money
from domain.wallet.posting import Posting
from penpay.bootstrap import Core
from persistence.unit_of_work import SqlUnitOfWork


class Books(Protocol):
    """What booking needs of a test harness (tests/api's Harness, tests/public_surface's Surface)."""

    @property
    def core(self) -> Core: ...

    @property
    def clock(self) -> Clock: ...


async def move(
    api: Books,
    user_id: str,
    cents: int,
    *,
    currency: Currency = Currency.KES,
    out: bool = False,
    at: datetime | None = None,
    description: str = "test posting",
) -> None:
    """Money into (or, with out=True, out of) the user's wallet against the float of its currency."""
    float_kind = AccountKind.MPESA_FLOAT if currency is Currency.KES else AccountKind.DERIV_AGENT_FLOAT
    async with SqlUnitOfWork(api.core.engine, clock=api.clock) as uow:
        wallet = await uow.ledger.get_or_create_account(
            kind=AccountKind.USER_WALLET, currency=currency, user_id=UserId.from_str(user_id)
        )
        float_account = await uow.ledger.get_or_create_account(kind=float_kind, currency=currency)
        amount = Money(cents, currency)
        lines = (
            [debit(wallet.id, amount), credit(float_account.id, amount)]
            if out
            else [debit(float_account.id, amount), credit(wallet.id, amount)]
        )
        await book(uow, Posting.create(lines=lines, description=description, now=at or api.clock.now()))
        await uow.commit()


async def fund_wallet(api: Books, user_id: str, cents: int, currency: Currency = Currency.KES) -> None:
    await move(api, user_id, cents, currency=currency, description="fund")

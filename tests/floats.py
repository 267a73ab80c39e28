"""Floats for test stacks that take payments: initiation refuses a payment its float cannot pay
out (application/payments/float_cover.py), so a stack built for payments opens with funded floats."""

from __future__ import annotations

from typing import Any

from application.payments.floats import fund_new_floats
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency, Money

OPENING = {
    AccountKind.DERIV_AGENT_FLOAT: Money(50_000_00, Currency.USD),
    AccountKind.MPESA_FLOAT: Money(10_000_000_00, Currency.KES),
}


async def fund_test_floats(core: Any) -> None:
    """Fund the floats of `core`'s database once (a database already funded is left as it is)."""
    async with core.unit_of_work(actor="tests") as uow:
        await fund_new_floats(uow, OPENING, "test opening balance")
        await uow.commit()

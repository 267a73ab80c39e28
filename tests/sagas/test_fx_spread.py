"""The FX spread lands in FX_SPREAD, apart from the conversion (FX at the quote's reference rate),
and the ledger still sums to zero per currency. MariaDB, Redis Streams, both simulators."""

from __future__ import annotations

import pytest
from sqlalchemy import case, func, select

from domain.payments.status import TransactionStatus as S
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency
from persistence.tables import ledger_entries
from tests.sagas.harness import Stack

pytestmark = pytest.mark.integration


async def _balance(stack: Stack, kind: AccountKind, currency: Currency) -> int:
    async with stack.uow() as uow:
        return (await uow.ledger.get_or_create_account(kind=kind, currency=currency)).balance_minor


async def _sums(stack: Stack) -> dict[str, int]:
    e = ledger_entries
    signed = case((e.c.side == "DEBIT", e.c.amount_cents), else_=-e.c.amount_cents)
    async with stack.engine.connect() as conn:
        rows = await conn.execute(select(e.c.amount_currency, func.sum(signed)).group_by(e.c.amount_currency))
        return {str(c): int(n) for c, n in rows}


async def test_a_deposit_books_its_spread_to_fx_spread_and_the_rest_to_fx(stack: Stack) -> None:
    user = await stack.user()
    # KES 2,600 at the buy rate 130 = USD 20.00; at the reference (mid) rate 129 USD 20 costs KES 2,580.
    tx = await stack.deposit(user, 2_600)
    assert (await stack.settle(tx.id)).status is S.COMPLETED

    assert await _balance(stack, AccountKind.FX_SPREAD, Currency.KES) == 20_00
    assert await _balance(stack, AccountKind.FX, Currency.KES) == 2_580_00
    assert await _balance(stack, AccountKind.FX, Currency.USD) == -20_00  # credit-normal: USD paid out
    assert await _balance(stack, AccountKind.FX_SPREAD, Currency.USD) == 0
    assert set((await _sums(stack)).values()) == {0}


async def test_a_withdrawal_books_its_spread_in_usd(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)  # USD 10 at the sell rate 128 = KES 1,280
    code = await stack.withdrawal_code()
    await stack.withdrawals.confirm_withdrawal(user_id=user, transaction_id=tx.id, verification_code=code)
    assert (await stack.settle(tx.id)).status is S.COMPLETED

    # At the reference rate 129, KES 1,280 costs USD 9.9225, rounded up to 9.93: the spread is USD 0.07.
    assert await _balance(stack, AccountKind.FX_SPREAD, Currency.USD) == 7
    assert await _balance(stack, AccountKind.FX, Currency.USD) == 9_93
    assert await _balance(stack, AccountKind.FX, Currency.KES) == -1_280_00
    assert set((await _sums(stack)).values()) == {0}

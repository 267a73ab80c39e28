"""A float that cannot pay a payment out refuses it at initiation (nothing written, nothing charged,
no code asked for) and takes the same request once funded; FloatLow events reach an operator as an
alert through their own consumer group. MariaDB, Redis Streams, both simulators over real sockets."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from application.alerts import ALERTS_LOGGER
from application.payments.errors import FloatInsufficient
from application.payments.floats import fund_float
from domain.payments.status import TransactionStatus as S
from domain.shared.ids import UserId
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency, Money
from persistence.tables import transactions
from tests.sagas.harness import AGENT_FLOAT_USD, MPESA_FLOAT_KES, Stack
from workers.float_low import float_low_consumer

pytestmark = pytest.mark.integration


async def _set_float(stack: Stack, kind: AccountKind, change: Money) -> None:
    async with stack.uow() as uow:
        await fund_float(uow, kind, change, "operator adjustment (test)")
        await uow.commit()


async def _transactions_of(stack: Stack, user: UserId) -> int:
    async with stack.engine.connect() as conn:
        count = await conn.execute(
            select(func.count()).select_from(transactions).where(transactions.c.user_id == user.value)
        )
        return int(count.scalar_one())


async def test_a_deposit_the_agent_float_cannot_cover_is_refused_then_taken_once_funded(stack: Stack) -> None:
    # USD 5 left at Deriv; KES 1,300 buys USD 10.
    await _set_float(stack, AccountKind.DERIV_AGENT_FLOAT, -(AGENT_FLOAT_USD - Money(5_00, Currency.USD)))
    user = await stack.user()

    with pytest.raises(FloatInsufficient) as refused:
        await stack.deposit(user, 1_300, key="same-request")
    assert "cannot pay out 10.00 USD to your Deriv account" in refused.value.message
    assert "Nothing was charged" in refused.value.message
    assert refused.value.reason == "FLOAT_INSUFFICIENT"
    assert await _transactions_of(stack, user) == 0  # nothing written, no STK push

    await _set_float(stack, AccountKind.DERIV_AGENT_FLOAT, Money(100_00, Currency.USD))
    tx = await stack.deposit(user, 1_300, key="same-request")
    assert (await stack.settle(tx.id)).status is S.COMPLETED
    assert await stack.deriv_transfers(str(tx.id)) == 1


async def test_a_withdrawal_the_mpesa_float_cannot_cover_is_refused_then_taken_once_funded(
    stack: Stack,
) -> None:
    # KES 1,000 left at M-Pesa; USD 10 pays out KES 1,280.
    await _set_float(stack, AccountKind.MPESA_FLOAT, -(MPESA_FLOAT_KES - Money(1_000_00, Currency.KES)))
    user = await stack.user()

    with pytest.raises(FloatInsufficient) as refused:
        await stack.withdrawal(user, 10_00, key="same-request")
    assert "cannot pay out 1280.00 KES by M-Pesa" in refused.value.message
    assert "Nothing was taken from your Deriv account" in refused.value.message
    assert await _transactions_of(stack, user) == 0  # no transaction, no code asked for

    await _set_float(stack, AccountKind.MPESA_FLOAT, Money(10_000_00, Currency.KES))
    tx = await stack.withdrawal(user, 10_00, key="same-request")
    assert tx.status is S.AWAITING_WITHDRAWAL_CODE


async def test_float_low_events_raise_one_alert_each_through_their_consumer_group(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    user = await stack.user()
    tx = await stack.deposit(user, 1_300)  # taken while the float could pay it
    await _set_float(stack, AccountKind.DERIV_AGENT_FLOAT, -AGENT_FLOAT_USD)  # then emptied
    await stack.settle(tx.id, until={S.MPESA_CONFIRMED}, timeout=10)
    for _ in range(3):
        await stack.sweeper.sweep_once()
    assert await stack.events("FloatLow")

    consumer = float_low_consumer(stack.bus, stack.engine, block_ms=100)
    await consumer.start()
    with caplog.at_level(logging.ERROR, logger=ALERTS_LOGGER):
        await stack.relay.relay_once()
        handled = []
        for _ in range(5):
            handled += [o for o in await consumer.process_once() if o.status == "handled"]
    alerts = [
        r for r in caplog.records if r.name == ALERTS_LOGGER and getattr(r, "alert", None) == "float_low"
    ]
    assert alerts, "no float_low alert"
    assert len(alerts) == len(handled)  # one per event, none for the other wallet events
    first = alerts[0]
    assert first.__dict__["float"] == "DERIV_AGENT_FLOAT"
    assert "10.00 USD" in first.getMessage() and "penpay float fund" in first.getMessage()
    balance = REGISTRY.get_sample_value(
        "penpay_float_low_balance_minor", {"kind": "DERIV_AGENT_FLOAT", "currency": "USD"}
    )
    assert balance == 0

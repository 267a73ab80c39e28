"""Daraja answers the sagas must not believe: a set-up error that is not Daraja's own refusal (an HTML
404 from a wrong base URL or proxy) and an answer about another request. The payment waits, an alert
is raised, and a later correct answer settles it; nothing is refused, refunded or paid twice."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from domain.payments.status import TransactionStatus as S
from mpesa_adapter.alerting import FOREIGN_ANSWER_ALERT
from mpesa_adapter.client import B2C, STK_PUSH
from mpesa_adapter.saga_port import SETUP_ERROR_ALERT
from persistence.tables import mpesa_callback_reviews
from tests.mpesa_adapter.conftest import WrongProxy
from tests.sagas.harness import Stack, running_stack
from workers.redis_bus import RedisStreamsBus

pytestmark = pytest.mark.integration


@pytest.fixture
async def proxied(
    fresh_mariadb_url: str, redis_url: str, key_prefix: str
) -> AsyncIterator[tuple[Stack, WrongProxy]]:
    proxy = WrongProxy((STK_PUSH, B2C))
    await proxy.start()
    bus = RedisStreamsBus.from_url(redis_url, prefix=key_prefix)
    try:
        async with running_stack(fresh_mariadb_url, bus, mpesa_base_url=proxy.base_url) as running:
            assert running.mpesa_sim.base_url is not None
            proxy.upstream = running.mpesa_sim.base_url
            await running.fund_floats()
            yield running, proxy
            await running.assert_consistent()
    finally:
        await bus.close()
        await proxy.stop()


def alerted(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "alert", None) == kind]


async def test_an_html_404_on_the_stk_push_leaves_the_deposit_waiting_for_a_person(
    proxied: tuple[Stack, WrongProxy], caplog: pytest.LogCaptureFixture
) -> None:
    stack, proxy = proxied
    caplog.set_level(logging.ERROR, logger="penpay.alerts")
    user = await stack.user()
    tx = await stack.deposit(user, 1_300)
    await stack.pump()

    assert proxy.refused == [STK_PUSH]
    waiting = await stack.get(tx.id)
    assert waiting.status is S.PENDING, waiting.failure_reason  # not a refusal of the customer's payment
    (alert,) = alerted(caplog, SETUP_ERROR_ALERT)
    assert "HTTP 404" in alert.getMessage()

    # Whether the push got through cannot be known: a person decides, the deposit is never failed.
    held = await stack.settle(tx.id)
    assert held.status is S.NEEDS_REVIEW, held.failure_reason
    assert proxy.refused == [STK_PUSH]  # a push is never sent again blindly


async def test_an_html_404_on_the_b2c_leaves_the_withdrawal_waiting_never_refunded(
    proxied: tuple[Stack, WrongProxy], caplog: pytest.LogCaptureFixture
) -> None:
    stack, proxy = proxied
    caplog.set_level(logging.ERROR, logger="penpay.alerts")
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)
    await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=await stack.withdrawal_code()
    )
    await stack.pump()

    assert proxy.refused == [B2C]
    waiting = await stack.get(tx.id)
    assert waiting.status is S.MPESA_DISBURSEMENT_SENT, waiting.failure_reason
    assert waiting.mpesa_disbursement is not None and str(waiting.mpesa_disbursement.status) == "SENT"
    assert await stack.deriv_transfers(f"{tx.id}-refund") == 0
    assert alerted(caplog, SETUP_ERROR_ALERT)

    # The proxy is mended: the same OriginatorConversationID goes again and pays once.
    proxy.broken = False
    done = await stack.settle(tx.id, timeout=30)
    assert done.status is S.COMPLETED, done.failure_reason
    paid = [r for r in (await stack.mpesa_books())["b2c"]["transactions"] if r["paid"]]
    assert len(paid) == 1
    assert await stack.deriv_transfers(f"{tx.id}-refund") == 0


async def test_answers_about_other_requests_hold_payments_until_a_correct_answer_settles_them(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="penpay.alerts")
    control = f"{stack.mpesa_sim.base_url}/__control__/faults"
    for rule in (
        {"kind": "foreign_answer", "api": "stk_query", "params": {"result_code": 1032}},
        {"kind": "foreign_answer", "api": "b2c"},
    ):
        async with stack.http.post(control, json=rule) as response:
            assert response.status == 201, await response.text()
    # Lab phone F=3: no callback ever; STK Query and Transaction Status alone decide.
    user = await stack.user(phone="254700031234")
    deposit = await stack.deposit(user, 1_300)
    withdrawal = await stack.withdrawal(user, 10_00)
    await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=withdrawal.id, verification_code=await stack.withdrawal_code()
    )

    paid_in = await stack.settle(deposit.id, timeout=30)
    paid_out = await stack.settle(withdrawal.id, timeout=30)

    assert paid_in.status is S.COMPLETED, paid_in.failure_reason  # "cancelled" was about another
    assert paid_out.status is S.COMPLETED, paid_out.failure_reason
    assert await stack.deriv_transfers(f"{withdrawal.id}-refund") == 0
    assert len([r for r in (await stack.mpesa_books())["b2c"]["transactions"] if r["paid"]]) == 1
    from sqlalchemy import select

    async with stack.engine.connect() as connection:
        kept = (
            await connection.execute(
                select(mpesa_callback_reviews.c.kind, mpesa_callback_reviews.c.transaction_id).where(
                    mpesa_callback_reviews.c.reason == "FOREIGN_ANSWER"
                )
            )
        ).all()
    assert sorted((k.kind, k.transaction_id) for k in kept) == sorted(
        [("stk_query", deposit.id.value), ("b2c", withdrawal.id.value)]
    )
    assert len(alerted(caplog, FOREIGN_ANSWER_ALERT)) == 2

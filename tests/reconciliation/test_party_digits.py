"""The masked MSISDN M-Pesa shows (`0722***000`) is never a key, but its visible digits must agree with
the party PenPay holds; a payment whose amounts agree and whose party does not is PARTY_MISMATCH, never
matched silently (real sockets: the Daraja simulator sends masked numbers, MariaDB)."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from domain.payments.status import TransactionStatus
from domain.shared.ids import TransactionId
from persistence.tables import c2b_payments, mpesa_requests
from tests.reconciliation.conftest import World, a_deposit_and_a_withdrawal

pytestmark = pytest.mark.integration


async def test_a_pulled_stk_payment_whose_visible_digits_differ_is_a_party_mismatch(world: World) -> None:
    deposit, _ = await a_deposit_and_a_withdrawal(world.stack)
    [row] = await world.rows(mpesa_requests, mpesa_requests.c.transaction_id == deposit.id)
    first = await world.run()
    assert first.unexplained == 0  # masked on the wire, and its visible digits agree
    # PenPay's record of the number the push went to says another number than M-Pesa shows
    async with world.stack.engine.begin() as conn:
        await conn.execute(
            update(mpesa_requests)
            .where(mpesa_requests.c.transaction_id == deposit.id)
            .values(phone="254799000111")
        )
    report = await world.run()
    item = next(r for r in await world.items(report) if r.item_key == f"c2b:{row.mpesa_receipt_number}")
    assert item.item_class == "PARTY_MISMATCH", item.detail
    assert item.review_status == "OPEN"
    assert "254799000111" not in item.detail and "0799***111" in item.detail  # masked only
    assert report.unexplained == 1


async def test_a_paybill_deposit_whose_payer_digits_differ_is_a_party_mismatch(world: World) -> None:
    stack = world.stack
    user = await stack.user()
    reference = await stack.paybill.reference_for(user)
    paid = await world.customer_pays_paybill("254711222333", 2_600, reference)
    [row] = await world.rows(c2b_payments)
    assert (await stack.settle(TransactionId(row.transaction_id))).status == TransactionStatus.COMPLETED
    key = f"c2b:{paid['TransID']}"
    assert {r.item_key: r.item_class for r in await world.items(await world.run())}[key] == "MATCHED"

    async with stack.engine.begin() as conn:
        await conn.execute(update(c2b_payments).values(msisdn_shown="0733***444"))
    report = await world.run()
    item = next(r for r in await world.items(report) if r.item_key == key)
    assert item.item_class == "PARTY_MISMATCH", item.detail


async def test_a_paybill_suspense_payment_whose_payer_digits_differ_is_a_party_mismatch(world: World) -> None:
    paid = await world.customer_pays_paybill("254711222333", 500, "NOSUCHREF", validation=False)
    async with world.stack.engine.begin() as conn:
        await conn.execute(update(c2b_payments).values(msisdn_shown="0733***444"))
    report = await world.run()
    item = next(r for r in await world.items(report) if r.item_key == f"c2b:{paid['TransID']}")
    assert item.item_class == "PARTY_MISMATCH", item.detail

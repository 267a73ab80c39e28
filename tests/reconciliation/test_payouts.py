"""Confirmed B2C payouts are reconciliation items too (Pull Transactions lists C2B only): each payout
of the window is compared with M-Pesa's result and the ledger, and Transaction Status is asked about
its receipt once, so a payout M-Pesa does not have is found. Real sockets: the Daraja simulator, the
callback endpoints, MariaDB."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from application.reconciliation.ports import Item
from application.reconciliation.rules import ItemClass
from application.reconciliation.service import Reconciler
from mpesa_adapter.callback_store import STATUS_CONFIRMED_AGAIN
from mpesa_adapter.pull_reads import PullReads
from mpesa_adapter.reconciliation_reads import DarajaReconciliationReads
from penpay.reconcile.wiring import ProviderReadsOverApis
from persistence.tables import audit_logs, audit_pending, mpesa_callback_reviews, mpesa_disbursements
from tests.mpesa_adapter.conftest import inbox_on
from tests.reconciliation.conftest import World, a_deposit_and_a_withdrawal

pytestmark = pytest.mark.integration


async def confirmations(world: World) -> int:
    return sum(
        [await world.count(t, t.c.action == STATUS_CONFIRMED_AGAIN) for t in (audit_logs, audit_pending)]
    )


async def test_a_confirmed_payout_is_matched_and_asked_about_once(world: World) -> None:
    _, withdrawal = await a_deposit_and_a_withdrawal(world.stack)
    [payout] = await world.rows(mpesa_disbursements)
    key = f"b2c:{payout.originator_conversation_id}"
    first = await world.run()
    item = next(r for r in await world.items(first) if r.item_key == key)
    assert item.item_class == "MATCHED", item.detail
    assert str(item.transaction_id) == str(withdrawal.id)
    assert item.provider_amount_cents == item.penpay_amount_cents == payout.amount_cents
    assert "Transaction Status confirms" in item.detail
    assert await confirmations(world) == 1

    again = await world.run()
    assert {r.item_key: r.item_class for r in await world.items(again)}[key] == "MATCHED"
    assert await confirmations(world) == 1  # not asked again


async def test_a_payout_m_pesa_does_not_have_is_missing_at_provider(world: World) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    [payout] = await world.rows(mpesa_disbursements)
    # PenPay's evidence names a receipt M-Pesa never issued
    async with world.stack.engine.begin() as conn:
        await conn.execute(update(mpesa_disbursements).values(transaction_receipt="UZZ0000000"))
    report = await world.run()
    key = f"b2c:{payout.originator_conversation_id}"
    item = next(r for r in await world.items(report) if r.item_key == key)
    assert item.item_class == "MISSING_AT_PROVIDER", item.detail
    assert item.review_status == "OPEN"
    reviews = await world.count(mpesa_callback_reviews)

    again = await world.run()
    assert {r.item_key: r.item_class for r in await world.items(again)}[key] == "MISSING_AT_PROVIDER"
    assert await world.count(mpesa_callback_reviews) == reviews  # not asked again


async def test_a_payout_whose_recipient_digits_differ_is_a_party_mismatch(world: World) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    [payout] = await world.rows(mpesa_disbursements)
    async with world.stack.engine.begin() as conn:
        await conn.execute(update(mpesa_disbursements).values(phone="254799000111"))
    report = await world.run()
    item = next(
        r for r in await world.items(report) if r.item_key == f"b2c:{payout.originator_conversation_id}"
    )
    assert item.item_class == "PARTY_MISMATCH", item.detail


async def test_a_payout_check_left_unanswered_is_asked_again_by_a_later_window(world: World) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    [payout] = await world.rows(mpesa_disbursements)
    key = f"b2c:{payout.originator_conversation_id}"
    start, end = await world.window()
    ours = world.reconciler._reads
    assert isinstance(ours, ProviderReadsOverApis)
    mpesa = ours._mpesa
    impatient = DarajaReconciliationReads(
        mpesa._client,
        world.stack.engine,
        inbox=inbox_on(world.stack.engine, world.stack.clock),
        clock=world.stack.clock,
        pulls=PullReads(
            mpesa._client,
            nominated_number="254708374149",
            callback_url=f"{world.stack.callbacks.base_url}/pull",
        ),
        balance_wait=0.0,  # the answers are not waited for
    )
    hasty = Reconciler(ProviderReadsOverApis(impatient, ours._deriv), world.store)
    await hasty.run(start, end, now=end)  # its Account Balance wait fails it too, after the payouts
    assert await world.store.item_states([key]) == {key: ("AWAITING_PROVIDER", payout.transaction_receipt)}
    # the worker's next window starts where this one ended: the payout is not in it, yet it is checked
    later = await world.reconciler.run(end, end + timedelta(minutes=5), now=end + timedelta(minutes=5))
    assert later.status == "SUCCEEDED", later
    found = {r.item_key: r.item_class for r in await world.items(later)}
    assert found[key] == "MATCHED", found


async def test_a_payout_confirmed_by_transaction_status_alone_is_matched(world: World) -> None:
    # M-Pesa's B2C result never arrives: the saga confirmed the payout by Transaction Status, whose
    # answer is then M-Pesa's word on it
    world.stack.mpesa_sim.add_fault("drop", api="b2c", count=1)
    await a_deposit_and_a_withdrawal(world.stack)
    [payout] = await world.rows(mpesa_disbursements)
    assert payout.status == "CONFIRMED" and "TransactionStatus" in (payout.raw_result or "")
    report = await world.run()
    item = next(
        r for r in await world.items(report) if r.item_key == f"b2c:{payout.originator_conversation_id}"
    )
    assert item.item_class == "MATCHED", item.detail
    assert item.provider_amount_cents == payout.amount_cents


async def test_a_payout_missing_by_the_grace_then_confirmed_is_checked(world: World) -> None:
    """An earlier run's MISSING_AT_PROVIDER for a payout still unconfirmed then (its grace ran out) is
    not Transaction Status's word about its receipt: once confirmed, the payout is asked about."""
    await a_deposit_and_a_withdrawal(world.stack)
    [payout] = await world.rows(mpesa_disbursements)
    key = f"b2c:{payout.originator_conversation_id}"
    start, end = await world.window()
    earlier = await world.store.start_run("test", start, end, end)
    await world.store.record_item(
        earlier,
        Item(
            key=key,
            source="mpesa_b2c",
            item_class=ItemClass.MISSING_AT_PROVIDER,
            detail="missing at provider (grace)",
            provider_ref=payout.originator_conversation_id,
        ),
        end,
    )
    report = await world.run()
    item = next(r for r in await world.items(report) if r.item_key == key)
    assert item.item_class == "MATCHED", item.detail
    assert item.provider_ref == payout.transaction_receipt
    assert await confirmations(world) == 1

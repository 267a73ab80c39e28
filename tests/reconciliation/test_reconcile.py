"""Reconciliation against the providers over real sockets: the saga stack of tests/sagas (MariaDB, both
simulators, the Deriv gateway, the M-Pesa callback endpoints), read only through Daraja's and the
gateway's APIs; the simulators' control API only seeds situations, as a customer or Deriv would."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from websockets.asyncio.client import connect

from application.reconciliation.ports import Item
from application.reconciliation.rules import Amount, ItemClass
from application.reconciliation.service import Reconciler
from application.review.paybill import PaybillSuspenseReview
from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN
from domain.payments.status import TransactionStatus
from domain.shared.ids import TransactionId
from mpesa_adapter.routes import PATHS, CallbackKind
from persistence.tables import (
    c2b_payments,
    ledger_postings,
    mpesa_disbursements,
    mpesa_requests,
    reconciliation_items,
    transactions,
)
from persistence.unit_of_work import SqlUnitOfWork
from tests.reconciliation.conftest import World, a_deposit_and_a_withdrawal

pytestmark = pytest.mark.integration


def classes(items: list[Any]) -> dict[str, str]:
    return {row.item_key: row.item_class for row in items}


async def test_a_clean_world_has_no_unexplained_difference_and_a_rerun_adds_nothing(world: World) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    report = await world.run()
    assert report.status == "SUCCEEDED", report
    assert report.unexplained == 0, [(r.item_key, r.detail) for r in await world.items(report)]
    found = classes(await world.items(report))
    # the STK payment, the Deriv transfer and withdrawal lines, the payout, both floats: all matched
    assert sorted(k.split(":")[0] for k in found) == ["b2c", "c2b", "deriv", "deriv", "float", "float"]
    assert set(found.values()) == {"MATCHED"}

    before = await world.count(reconciliation_items)
    again = await world.run()
    assert again.unexplained == 0
    # every provider record (and the floats, as of the same moment) is recorded once
    assert await world.count(reconciliation_items) == before


SUSPENSE = ledger_postings.c.description.like("reconciliation suspense:%")
PAYBILL_SUSPENSE = ledger_postings.c.description.like("paybill payment % held in suspense:%")


async def test_money_at_mpesa_whose_confirmation_never_came_goes_to_suspense_once(world: World) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    world.stack.mpesa_sim.add_fault("drop", api="c2b")  # M-Pesa takes it; its confirmation is lost
    paid = await world.customer_pays_paybill("254711222333", 500, validation=False)
    assert paid["status"] == "completed"
    trans_id = paid["TransID"]

    report = await world.run()
    found = classes(await world.items(report))
    assert found[f"c2b:{trans_id}"] == "UNKNOWN_AT_PENPAY"
    # booked to suspense: the M-Pesa float now holds it, and matches M-Pesa's balance again
    assert found[next(k for k in found if k.startswith("float:mpesa"))] == "MATCHED"
    assert report.unexplained == 1
    assert await world.count(ledger_postings, SUSPENSE) == 1
    # ... and it is a paybill payment in suspense now, for the paybill suspense review to assign
    assert (
        await world.count(
            c2b_payments, c2b_payments.c.trans_id == trans_id, c2b_payments.c.status == "SUSPENSE"
        )
        == 1
    )

    await world.run()  # the same window again: no second posting, no second item
    assert await world.count(ledger_postings, SUSPENSE) == 1
    assert await world.count(reconciliation_items, reconciliation_items.c.item_key == f"c2b:{trans_id}") == 1
    assert await world.count(ledger_postings, PAYBILL_SUSPENSE) == 0


RELEASED = ledger_postings.c.description.like("paybill payment % released from suspense to %")


async def _confirm_late(world: World, body: Any) -> None:
    """Daraja retries the confirmation whose first delivery was lost (the simulator's body, as sent)."""
    stack = world.stack
    confirm = f"{stack.callbacks.base_url}{PATHS[CallbackKind.C2B_CONFIRMATION]}"
    async with stack.http.post(f"{confirm}/{stack.daraja_config.callback_secret}", json=body) as r:
        assert r.status == 200


async def test_a_validated_payment_confirmed_after_reconciliation_is_released_to_its_deposit_once(
    world: World,
) -> None:
    stack = world.stack
    user = await stack.user()
    reference = await stack.paybill.reference_for(user)
    stack.mpesa_sim.add_fault("drop", api="c2b")
    paid = await world.customer_pays_paybill("254711222333", 2_600, reference)
    trans_id = paid["TransID"]
    # PenPay heard the validation only: the money is not PenPay's to know of yet
    assert await world.count(c2b_payments, c2b_payments.c.status == "VALIDATED") == 1

    report = await world.run()
    assert classes(await world.items(report))[f"c2b:{trans_id}"] == "UNKNOWN_AT_PENPAY"
    assert await world.count(ledger_postings, SUSPENSE) == 1

    # the confirmation arrives at last and matches the validation PenPay accepted for a known
    # reference: the suspense is released and the deposit started, in one database transaction
    await _confirm_late(world, paid["body"])
    [row] = await world.rows(c2b_payments, c2b_payments.c.trans_id == trans_id)
    assert (row.status, row.resolved_by) == ("DEPOSIT", "m-pesa:late-confirmation")
    assert await world.count(transactions) == 1
    assert await world.count(ledger_postings, RELEASED) == 1
    assert await world.count(ledger_postings, PAYBILL_SUSPENSE) == 0
    # Daraja retries it once more: a repeat, nothing booked twice
    await _confirm_late(world, paid["body"])
    assert await world.count(transactions) == 1
    assert await world.count(ledger_postings, RELEASED) == 1
    tx = TransactionId(row.transaction_id)
    done = await stack.settle(tx)
    assert done.status == TransactionStatus.COMPLETED, done.failure_reason
    assert await stack.deriv_transfers(str(tx)) == 1

    # a later run meets the payment handled: no second suspense posting, matched from then on
    last = await world.run()
    assert last.unexplained == 0, [(r.item_key, r.detail) for r in await world.items(last)]
    found = classes(await world.items(last))
    assert found[f"c2b:{trans_id}"] == "MATCHED"
    assert found[next(k for k in found if k.startswith("float:mpesa"))] == "MATCHED"
    assert await world.count(ledger_postings, SUSPENSE) == 1
    assert await world.count(ledger_postings, RELEASED) == 1


async def test_a_payment_never_validated_confirmed_after_reconciliation_stays_in_suspense(
    world: World,
) -> None:
    stack = world.stack
    deposit, _ = await a_deposit_and_a_withdrawal(stack)  # (the run's window needs a transaction)
    reference = await stack.paybill.reference_for(deposit.user_id)
    stack.mpesa_sim.add_fault("drop", api="c2b")
    # a known reference, but the validation was skipped: no accepted validation to match
    paid = await world.customer_pays_paybill("254711222333", 2_600, reference, validation=False)
    trans_id = paid["TransID"]

    report = await world.run()
    assert classes(await world.items(report))[f"c2b:{trans_id}"] == "UNKNOWN_AT_PENPAY"
    assert await world.count(ledger_postings, SUSPENSE) == 1

    # the confirmation arrives at last: a repeat of a settled payment, nothing booked, no deposit
    await _confirm_late(world, paid["body"])
    assert await world.count(ledger_postings, PAYBILL_SUSPENSE) == 0
    assert await world.count(ledger_postings, RELEASED) == 0
    assert await world.count(transactions) == 2
    assert await world.count(c2b_payments, c2b_payments.c.status == "SUSPENSE") == 1
    again = await world.run()
    assert again.unexplained == 0, [(r.item_key, r.detail) for r in await world.items(again)]
    assert classes(await world.items(again))[f"c2b:{trans_id}"] == "HELD_IN_SUSPENSE"
    assert await world.count(ledger_postings, SUSPENSE) == 1

    # two people give it to its owner (the paybill suspense review): a deposit, matched from then on
    review = PaybillSuspenseReview(
        unit_of_work=lambda: SqlUnitOfWork(stack.engine),
        deposits=stack.paybill,
    )
    await review.propose_assignment(staff="op-1", trans_id=trans_id, reference=reference, reason="SMS")
    tx = await review.approve_assignment(staff="op-2", trans_id=trans_id)
    assert (await stack.settle(tx)).status == TransactionStatus.COMPLETED
    last = await world.run()
    assert last.unexplained == 0, [(r.item_key, r.detail) for r in await world.items(last)]
    found = classes(await world.items(last))
    assert found[f"c2b:{trans_id}"] == "MATCHED"
    assert found[next(k for k in found if k.startswith("float:mpesa"))] == "MATCHED"
    assert await world.count(ledger_postings, SUSPENSE) == 1


async def test_a_paybill_deposit_is_matched(world: World) -> None:
    stack = world.stack
    user = await stack.user()
    reference = await stack.paybill.reference_for(user)
    paid = await world.customer_pays_paybill("254711222333", 2_600, reference)
    [row] = await world.rows(c2b_payments)
    assert (row.trans_id, row.status) == (paid["TransID"], "DEPOSIT")
    tx = await stack.settle(TransactionId(row.transaction_id))
    assert tx.status == TransactionStatus.COMPLETED

    report = await world.run()
    assert report.unexplained == 0, [(r.item_key, r.detail) for r in await world.items(report)]
    assert classes(await world.items(report))[f"c2b:{paid['TransID']}"] == "MATCHED"
    assert await world.count(ledger_postings, SUSPENSE) == 0


async def test_a_payment_penpay_put_in_suspense_itself_is_explained_and_not_booked_again(
    world: World,
) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    # an account number PenPay never issued, validation skipped: the confirmation books it to suspense
    paid = await world.customer_pays_paybill("254711222333", 500, "NOSUCHREF", validation=False)
    assert await world.count(ledger_postings, PAYBILL_SUSPENSE) == 1

    report = await world.run()
    assert report.unexplained == 0, [(r.item_key, r.detail) for r in await world.items(report)]
    found = classes(await world.items(report))
    assert found[f"c2b:{paid['TransID']}"] == "HELD_IN_SUSPENSE"
    assert found[next(k for k in found if k.startswith("float:mpesa"))] == "MATCHED"
    assert await world.count(ledger_postings, SUSPENSE) == 0
    assert await world.count(ledger_postings, PAYBILL_SUSPENSE) == 1


async def test_an_amount_penpay_recorded_differently_is_a_mismatch(world: World) -> None:
    deposit, _ = await a_deposit_and_a_withdrawal(world.stack)
    async with world.stack.engine.begin() as conn:
        await conn.execute(
            update(mpesa_requests)
            .where(mpesa_requests.c.transaction_id == deposit.id.value)
            .values(amount_cents=mpesa_requests.c.amount_cents + 100)
        )
    report = await world.run()
    found = classes(await world.items(report))
    assert [v for k, v in found.items() if k.startswith("c2b:")] == ["AMOUNT_MISMATCH"]


async def test_a_transfer_deriv_made_twice_is_paid_twice(world: World) -> None:
    deposit, _ = await a_deposit_and_a_withdrawal(world.stack)
    # someone repeats the transfer by hand with PenPay's reference
    async with connect(world.stack.deriv_sim.url(app_id=1089)) as ws:
        await ws.send(json.dumps({"authorize": DEFAULT_AGENT_TOKEN, "req_id": 1}))
        assert "error" not in json.loads(await ws.recv())
        await ws.send(
            json.dumps(
                {
                    "paymentagent_transfer": 1,
                    "transfer_to": "CR90000001",
                    "amount": deposit.converted_amount.amount_minor / 100,
                    "currency": "USD",
                    "description": str(deposit.id.value),
                    "req_id": 2,
                }
            )
        )
        assert "error" not in json.loads(await ws.recv())
    report = await world.run()
    values = sorted(v for k, v in classes(await world.items(report)).items() if k.startswith("deriv:"))
    assert values == ["DUPLICATE_AT_PROVIDER", "MATCHED", "MATCHED"]
    floats = [r for r in await world.items(report) if r.source == "deriv_float"]
    assert [r.item_class for r in floats] == ["FLOAT_MISMATCH"]


async def test_a_pull_failing_with_http_200_fails_the_run_with_an_alarm(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    world.stack.mpesa_sim.add_fault("pull_failure", api="pull_query", count=None)
    with caplog.at_level(logging.ERROR, logger="penpay.alerts"):
        report = await world.run()
    assert report.status == "FAILED" and "1001" in (report.error or "")
    assert any(getattr(r, "alert", None) == "reconciliation_read_failed" for r in caplog.records)
    assert await world.store.cursor("mpesa_c2b") is None  # nothing was taken as reconciled


async def test_a_payout_mpesa_does_not_know_is_asked_about_then_missing(world: World) -> None:
    _, withdrawal = await a_deposit_and_a_withdrawal(world.stack)
    unknown = "PENPAY-never-sent-to-daraja"
    async with world.stack.engine.begin() as conn:  # evidence of a payout M-Pesa never received
        await conn.execute(
            update(mpesa_disbursements)
            .where(mpesa_disbursements.c.transaction_id == withdrawal.id.value)
            .values(originator_conversation_id=unknown, status="SENT", transaction_receipt=None)
        )
    first = await world.run()
    found = classes(await world.items(first))
    assert found[f"b2c:{unknown}"] == "AWAITING_PROVIDER"  # Transaction Status asked, within the grace
    asked = [c for c in world.stack.mpesa_sim.callbacks if c["kind"].startswith("status")]
    assert asked, "no Transaction Status was sent"

    strict = Reconciler(world.reconciler._reads, world.store, b2c_grace=timedelta(0))
    start, end = await world.window()
    second = await strict.run(start, end, now=end)
    assert classes(await world.items(second))[f"b2c:{unknown}"] == "MISSING_AT_PROVIDER"


async def test_a_payment_confirmed_by_stk_query_alone_is_found_by_its_account_reference(world: World) -> None:
    deposit, _ = await a_deposit_and_a_withdrawal(world.stack)
    async with world.stack.engine.begin() as conn:  # a lost callback: PenPay holds no receipt
        await conn.execute(
            update(mpesa_requests)
            .where(mpesa_requests.c.transaction_id == deposit.id.value)
            .values(mpesa_receipt_number=None)
        )
    report = await world.run()
    assert report.unexplained == 0, [(r.item_key, r.detail) for r in await world.items(report)]
    assert await world.count(ledger_postings, SUSPENSE) == 0


async def test_a_reversed_withdrawal_and_its_transfer_back_reconcile(world: World) -> None:
    stack = world.stack
    user = await stack.user(phone="254712342040")  # M-Pesa refuses payouts to this number (2040)
    deposit = await stack.deposit(user, 2_600)
    assert (await stack.settle(deposit.id)).status == TransactionStatus.COMPLETED
    withdrawal = await stack.withdrawal(user, 10_00)
    await stack.settle(withdrawal.id, until={TransactionStatus.AWAITING_WITHDRAWAL_CODE})
    await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=withdrawal.id, verification_code=await stack.withdrawal_code()
    )
    assert (await stack.settle(withdrawal.id)).status == TransactionStatus.REVERSED
    report = await world.run()
    assert report.unexplained == 0, [(r.item_key, r.detail) for r in await world.items(report)]
    deriv = [r for r in await world.items(report) if r.source == "deriv_statement"]
    assert len(deriv) == 3  # the deposit's transfer, the withdrawal, the USD sent back


async def test_a_payment_penpay_has_not_confirmed_yet_waits_and_is_never_suspense(world: World) -> None:
    deposit, _ = await a_deposit_and_a_withdrawal(world.stack)
    async with world.stack.engine.begin() as conn:  # as if its callback were still on the way
        await conn.execute(
            update(mpesa_requests)
            .where(mpesa_requests.c.transaction_id == deposit.id.value)
            .values(mpesa_receipt_number=None, status="SENT")
        )
    report = await world.run()
    c2b = [r for r in await world.items(report) if r.source == "mpesa_c2b"]
    assert [r.item_class for r in c2b] == ["AWAITING_PROVIDER"]
    assert await world.count(ledger_postings, SUSPENSE) == 0


async def test_a_confirmation_settling_it_while_a_run_looks_leaves_nothing_to_book(world: World) -> None:
    # The run read the pull before the confirmation landed, and classified the payment unknown;
    # recording it finds the TransID settled under its row lock and books nothing.
    paid = await world.customer_pays_paybill("254711222333", 500, "NOSUCHREF", validation=False)
    report = await world.run()
    late = Item(
        key="c2b:race-test",
        source="mpesa_c2b",
        item_class=ItemClass.UNKNOWN_AT_PENPAY,
        detail="read before the confirmation",
        provider_ref=paid["TransID"],
        provider_amount=Amount(500_00, "KES"),
        float_kind="MPESA_FLOAT",
        reference="NOSUCHREF",
        account=world.stack.daraja_config.shortcode,
    )
    _, end = await world.window()
    await world.store.record_item(report.run_id, late, end)
    assert await world.count(ledger_postings, SUSPENSE) == 0
    assert await world.count(ledger_postings, PAYBILL_SUSPENSE) == 1

"""A suspense payment given back to its payer by M-Pesa's Reversal, worked through OpsService over real
sockets (gRPC, the Daraja simulator, the callback endpoints, MariaDB): two people, one request id,
booked only on M-Pesa's confirmation, an answer lost on the way resolved by Transaction Status and
never sent again, and a result that is not about our request changing nothing."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from mpesa_adapter.client import DarajaClient
from mpesa_adapter.routes import PATHS, CallbackKind
from penpay.ops.v1 import ops_pb2 as pb
from persistence import ledger_balances
from persistence.tables import (
    audit_logs,
    c2b_payments,
    ledger_accounts,
    ledger_postings,
    mpesa_callback_reviews,
    paybill_refunds,
)
from tests.ops.conftest import Review
from tests.ops.test_review_queue import reason_of

pytestmark = pytest.mark.integration

REFUNDED = ledger_postings.c.description.like("paybill payment % refunded to its payer by M-Pesa Reversal")


async def _suspense_payment(review: Review, shillings: int = 2_600) -> str:
    stack = review.stack
    async with DarajaClient(stack.daraja_config) as client:
        await client.register_c2b_urls()
    body = {"account": "no such ref", "amount": shillings, "phone": "254712345678", "validation": False}
    async with stack.http.post(f"{stack.mpesa_sim.base_url}/__control__/c2b/pay", json=body) as response:
        assert response.status == 201, await response.text()
        paid = await response.json()
    await stack.mpesa_sim.drain()
    return str(paid["TransID"])


async def _one(review: Review, query: Any) -> Any:
    async with review.stack.engine.connect() as conn:
        return (await conn.execute(query)).first()


async def _count(review: Review, table: Any, *where: Any) -> int:
    async with review.stack.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one())


async def _suspense_kes(review: Review) -> int:
    row = await _one(
        review,
        select(ledger_balances.balance().label("balance_cents")).where(
            ledger_accounts.c.kind == "SUSPENSE", ledger_accounts.c.currency == "KES"
        ),
    )
    return int(row.balance_cents)


async def _reversals(review: Review, trans_id: str) -> list[dict[str, Any]]:
    books = await review.stack.mpesa_books()
    return [r for r in books["reversals"]["transactions"] if r["original_trans_id"] == trans_id]


async def _audits(review: Review, trans_id: str) -> list[tuple[str, Any, Any]]:
    async with review.stack.engine.connect() as conn:
        rows = await conn.execute(
            select(audit_logs.c.action, audit_logs.c.details)
            .where(audit_logs.c.subject_id == trans_id, audit_logs.c.action.like("review.paybill.%"))
            .order_by(audit_logs.c.id)
        )
        return [
            (r.action, json.loads(r.details)["proposed_by"], json.loads(r.details)["approved_by"])
            for r in rows
        ]


async def test_a_refund_takes_two_people_and_is_booked_once_when_mpesa_confirms_it(review: Review) -> None:
    stack = review.stack
    trans_id = await _suspense_payment(review)
    held = await _suspense_kes(review)
    alice = review.staff("alice", "operator", "approver")
    with pytest.raises(grpc.aio.AioRpcError) as viewer:
        await review.ops.ProposePaybillRefund(
            pb.ProposePaybillRefundRequest(trans_id=trans_id, reason="payer asked"),
            metadata=review.staff("vic", "viewer"),
        )
    assert viewer.value.code() is grpc.StatusCode.PERMISSION_DENIED

    proposed = await review.ops.ProposePaybillRefund(
        pb.ProposePaybillRefundRequest(trans_id=trans_id, reason="payer asked: wrong paybill"), metadata=alice
    )
    assert (proposed.refund.status, proposed.refund.proposed_by) == ("PROPOSED", "operator:alice")
    ocid = proposed.refund.originator_conversation_id
    with pytest.raises(grpc.aio.AioRpcError) as twice:  # proposing again refunds nothing twice
        await review.ops.ProposePaybillRefund(
            pb.ProposePaybillRefundRequest(trans_id=trans_id, reason="again"),
            metadata=review.staff("dan", "operator"),
        )
    assert reason_of(twice.value) == "REVIEW_ACTION_ALREADY_OPEN"
    with pytest.raises(grpc.aio.AioRpcError) as assign:  # nor can it be assigned meanwhile
        await review.ops.ProposePaybillAssignment(
            pb.ProposePaybillAssignmentRequest(trans_id=trans_id, reference="PPABCDEFGH", reason="x"),
            metadata=alice,
        )
    assert assign.value.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
    listed = await review.ops.ListPaybillSuspense(pb.ListPaybillSuspenseRequest(), metadata=alice)
    [item] = [i for i in listed.items if i.trans_id == trans_id]
    assert (item.refund_status, item.refund_proposed_by) == ("PROPOSED", "operator:alice")

    with pytest.raises(grpc.aio.AioRpcError) as own:
        await review.ops.ApprovePaybillRefund(
            pb.ApprovePaybillRefundRequest(trans_id=trans_id), metadata=alice
        )
    assert reason_of(own.value) == "FOUR_EYES_REQUIRED"
    assert await _reversals(review, trans_id) == []  # nothing was asked of M-Pesa

    approved = await review.ops.ApprovePaybillRefund(
        pb.ApprovePaybillRefundRequest(trans_id=trans_id), metadata=review.staff("bob", "approver")
    )
    assert (approved.refund.status, approved.refund.originator_conversation_id) == ("ACCEPTED", ocid)
    assert await _count(review, ledger_postings, REFUNDED) == 0  # not before M-Pesa confirms it
    await stack.mpesa_sim.drain()

    row = await _one(review, select(c2b_payments).where(c2b_payments.c.trans_id == trans_id))
    assert (row.status, row.resolved_by) == ("REFUNDED", "operator:bob")
    refund = await _one(review, select(paybill_refunds).where(paybill_refunds.c.trans_id == trans_id))
    assert (refund.status, refund.originator_conversation_id, refund.approved_by) == (
        "REFUNDED",
        ocid,
        "operator:bob",
    )
    [reversal] = await _reversals(review, trans_id)
    assert (reversal["reversed"], reversal["amount"], reversal["originator_conversation_id"]) == (
        True,
        2_600,
        ocid,
    )
    assert refund.reversal_receipt == reversal["transaction_id"]
    assert await _count(review, ledger_postings, REFUNDED) == 1
    assert await _suspense_kes(review) == held - 2_600_00

    with pytest.raises(grpc.aio.AioRpcError) as again:  # approving twice refunds nothing twice
        await review.ops.ApprovePaybillRefund(
            pb.ApprovePaybillRefundRequest(trans_id=trans_id), metadata=review.staff("carol", "approver")
        )
    assert reason_of(again.value) == "REVIEW_ACTION_NOT_POSSIBLE"
    assert len(await _reversals(review, trans_id)) == 1
    assert await _audits(review, trans_id) == [
        ("review.paybill.refund_proposed", "operator:alice", None),
        ("review.paybill.four_eyes_refused", "operator:alice", "operator:alice"),
        ("review.paybill.refund_approved", "operator:alice", "operator:bob"),
        ("review.paybill.refund_confirmed", "operator:alice", "operator:bob"),
    ]
    assert (
        await _count(
            review,
            mpesa_callback_reviews,
            mpesa_callback_reviews.c.correlation_id == trans_id,
            mpesa_callback_reviews.c.status == "OPEN",
        )
        == 0
    )


async def test_a_reversal_whose_answer_was_lost_is_asked_about_never_sent_again(review: Review) -> None:
    stack = review.stack
    trans_id = await _suspense_payment(review)
    # M-Pesa carries the reversal out; its answer and its Result never reach PenPay
    stack.mpesa_sim.add_fault("answer_lost", api="reversal")
    stack.mpesa_sim.add_fault("drop", api="reversal")
    await review.ops.ProposePaybillRefund(
        pb.ProposePaybillRefundRequest(trans_id=trans_id, reason="payer asked"),
        metadata=review.staff("alice", "operator"),
    )
    bob = review.staff("bob", "approver")
    first = await review.ops.ApprovePaybillRefund(
        pb.ApprovePaybillRefundRequest(trans_id=trans_id), metadata=bob
    )
    assert first.refund.status == "UNKNOWN"
    await stack.mpesa_sim.drain()
    [done] = await _reversals(review, trans_id)
    assert done["reversed"]  # M-Pesa did it ...
    row = await _one(review, select(c2b_payments.c.status).where(c2b_payments.c.trans_id == trans_id))
    assert row.status == "SUSPENSE"  # ... PenPay cannot know yet, and books nothing
    assert await _count(review, ledger_postings, REFUNDED) == 0

    # approving again sends nothing: it asks Transaction Status, whose answer settles it
    asked = await review.ops.ApprovePaybillRefund(
        pb.ApprovePaybillRefundRequest(trans_id=trans_id), metadata=review.staff("carol", "approver")
    )
    assert asked.refund.status == "UNKNOWN" and "nothing was sent again" in asked.refund.detail
    await stack.mpesa_sim.drain()
    assert len(await _reversals(review, trans_id)) == 1  # one request at M-Pesa, ever
    refund = await _one(review, select(paybill_refunds).where(paybill_refunds.c.trans_id == trans_id))
    assert (refund.status, refund.reversal_receipt) == ("REFUNDED", done["transaction_id"])
    row = await _one(review, select(c2b_payments.c.status).where(c2b_payments.c.trans_id == trans_id))
    assert row.status == "REFUNDED"
    assert await _count(review, ledger_postings, REFUNDED) == 1
    actions = [a for a, _, _ in await _audits(review, trans_id)]
    assert actions == [
        "review.paybill.refund_proposed",
        "review.paybill.refund_approved",
        "review.paybill.refund_status_asked",
        "review.paybill.refund_confirmed",
    ]


async def test_a_result_not_about_our_request_changes_nothing(review: Review) -> None:
    stack = review.stack
    trans_id = await _suspense_payment(review)
    stack.mpesa_sim.add_fault("drop", api="reversal")  # the real Result never comes
    await review.ops.ProposePaybillRefund(
        pb.ProposePaybillRefundRequest(trans_id=trans_id, reason="payer asked"),
        metadata=review.staff("alice", "operator"),
    )
    approved = await review.ops.ApprovePaybillRefund(
        pb.ApprovePaybillRefundRequest(trans_id=trans_id), metadata=review.staff("bob", "approver")
    )
    assert approved.refund.status == "ACCEPTED"
    await stack.mpesa_sim.drain()
    ocid = approved.refund.originator_conversation_id
    secret = stack.daraja_config.callback_secret
    url = f"{stack.callbacks.base_url}{PATHS[CallbackKind.REVERSAL_RESULT]}"

    def result(ocid: str, conversation_id: str, original: str = trans_id) -> dict[str, Any]:
        return {
            "Result": {
                "ResultType": 0,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "OriginatorConversationID": ocid,
                "ConversationID": conversation_id,
                "TransactionID": "UL6FORGED1",
                "ResultParameters": {
                    "ResultParameter": [
                        {"Key": "Amount", "Value": 2600.0},
                        {"Key": "OriginalTransactionID", "Value": original},
                    ]
                },
            }
        }

    async with stack.http.post(f"{url}/{'x' * 32}", json=result(ocid, "AG_1")) as wrong_secret:
        assert wrong_secret.status == 404
    for forged in (
        result("PENPAY-REV-someone-else", "AG_20260302_0000"),  # another request
        result(ocid, "AG_20260302_another0000"),  # our id, another ConversationID
        result(ocid, (await _refund(review, trans_id)).conversation_id, original="UL6OTHER00"),
    ):
        async with stack.http.post(f"{url}/{secret}", json=forged) as answered:
            assert answered.status == 200
    assert (await _refund(review, trans_id)).status == "ACCEPTED"
    assert await _count(review, ledger_postings, REFUNDED) == 0
    kept = await _count(
        review, mpesa_callback_reviews, mpesa_callback_reviews.c.reason.in_(["FOREIGN_ANSWER", "UNKNOWN_ID"])
    )
    assert kept == 3

    # M-Pesa's own word (Transaction Status, asked by approving again) settles it
    await review.ops.ApprovePaybillRefund(
        pb.ApprovePaybillRefundRequest(trans_id=trans_id), metadata=review.staff("bob", "approver")
    )
    await stack.mpesa_sim.drain()
    assert (await _refund(review, trans_id)).status == "REFUNDED"
    assert await _count(review, ledger_postings, REFUNDED) == 1


async def test_mpesa_refusing_the_reversal_leaves_the_payment_in_suspense(review: Review) -> None:
    stack = review.stack
    trans_id = await _suspense_payment(review)
    # someone reversed it on the M-Pesa portal already: M-Pesa refuses a second reversal
    async with DarajaClient(stack.daraja_config) as client:
        await client.reversal(
            originator_conversation_id="PORTAL-1", transaction_id=trans_id, amount_cents=2_600_00
        )
    await stack.mpesa_sim.drain()
    await review.ops.ProposePaybillRefund(
        pb.ProposePaybillRefundRequest(trans_id=trans_id, reason="payer asked"),
        metadata=review.staff("alice", "operator"),
    )
    await review.ops.ApprovePaybillRefund(
        pb.ApprovePaybillRefundRequest(trans_id=trans_id), metadata=review.staff("bob", "approver")
    )
    await stack.mpesa_sim.drain()
    refund = await _refund(review, trans_id)
    assert (refund.status, refund.result_code) == ("FAILED", "R000001")
    row = await _one(review, select(c2b_payments.c.status).where(c2b_payments.c.trans_id == trans_id))
    assert row.status == "SUSPENSE"
    assert await _count(review, ledger_postings, REFUNDED) == 0
    # (the portal's reversal is money PenPay's ledger does not know: the consistency check at the
    # end of the review stack would rightly flag it, so the test books it as an operator would)
    await _book_portal_reversal(review, trans_id)


async def _refund(review: Review, trans_id: str) -> Any:
    return await _one(
        review,
        select(paybill_refunds)
        .where(paybill_refunds.c.trans_id == trans_id)
        .order_by(paybill_refunds.c.created_at.desc()),
    )


async def _book_portal_reversal(review: Review, trans_id: str) -> None:
    from application.ledger import book
    from application.payments import bookings
    from application.payments.paybill import Status
    from domain.wallet.money import Currency, Money
    from persistence.unit_of_work import SqlUnitOfWork

    async with SqlUnitOfWork(review.stack.engine) as uow:
        posting = await bookings.paybill_suspense_refunded(
            uow.ledger, Money(2_600_00, Currency.KES), trans_id
        )
        await book(uow, posting)
        await uow.paybill.update(trans_id, now=uow.clock.now(), status=Status.REFUNDED)
        await uow.commit()

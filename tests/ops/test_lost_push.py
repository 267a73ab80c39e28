"""A deposit whose STK push's answer was lost (the simulator carries the push out and answers
500.003.1001) and which the saga's own lookups left to people: its way out through the review API,
four-eyes, on M-Pesa's own records. The push's AccountReference is looked up in Pull Transactions;
a paid push's callback, parked for want of the CheckoutRequestID, gives the id back, and the saga
credits the deposit after STK Query agrees. An unpaid one is failed only once the push can no
longer be paid."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from sqlalchemy import select

from application.review.service import LOST_PUSH_WAIT
from domain.payments.attachments import EvidenceStatus as E
from domain.payments.status import TransactionStatus as S
from domain.payments.transaction import Transaction
from penpay.ops.v1 import ops_pb2 as pb
from persistence.tables import mpesa_callback_reviews
from tests.ops.conftest import Review
from tests.ops.test_review_more import FAIL, RETRY, approve, clear_mpesa_faults, mpesa_fault, propose
from tests.ops.test_review_queue import audit_actions, reason_of

pytestmark = pytest.mark.integration


async def parked_callbacks(review: Review, wanted: int) -> list[tuple[str, str]]:
    """(correlation_id, status) of the STK callbacks parked for want of their id, once `wanted` came."""
    t = mpesa_callback_reviews
    for _ in range(200):
        async with review.stack.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(t.c.correlation_id, t.c.status)
                    .where(t.c.kind == "stk")
                    .where(t.c.reason == "UNKNOWN_ID")
                )
            ).all()
        if len(rows) >= wanted:
            return [(r.correlation_id, r.status) for r in rows]
        await asyncio.sleep(0.05)
    raise AssertionError("no STK callback was parked")


async def lost_push(review: Review, phone: str, *, callback_lost: bool = False) -> Transaction:
    """A deposit whose push's answer was lost, under review: the saga's own lookups found nothing
    (M-Pesa's list could not be read while it looked). `callback_lost`: its callback never came."""
    stack = review.stack
    user = await stack.user(phone=phone)
    await mpesa_fault(review, kind="answer_lost", api="stk")
    if callback_lost:
        await mpesa_fault(review, kind="drop", api="stk")
    await mpesa_fault(review, kind="pull_failure", api="pull_query", count=None)
    tx = await stack.deposit(user, 1_300)
    done = await stack.settle(tx.id)
    await clear_mpesa_faults(review)
    assert done.status is S.NEEDS_REVIEW, done.failure_reason
    assert done.mpesa_request is None and "answer was lost" in (done.failure_reason or "")
    if not callback_lost:  # the push went ahead: M-Pesa called back about an id PenPay never saw
        await parked_callbacks(review, 1)
    review.clock.set(done.updated_at + LOST_PUSH_WAIT)
    return done


async def test_a_paid_push_whose_answer_was_lost_is_taken_in_and_credited(review: Review) -> None:
    tx = await lost_push(review, "254722041234")  # the customer pays
    action = await propose(review, tx.id, FAIL)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await approve(review, action.action_id)
    assert reason_of(denied.value) == "EVIDENCE_DENIED"
    assert "under this deposit's reference" in (denied.value.details() or "")
    assert (await review.stack.get(tx.id)).status is S.NEEDS_REVIEW

    retry = await propose(review, tx.id, RETRY)
    done = await approve(review, retry.action_id)
    assert done.status == pb.REVIEW_ACTION_STATUS_EXECUTED
    [(checkout, status)] = await parked_callbacks(review, 1)
    assert status == "ADOPTED"  # the parked callback is this push's evidence now
    resumed = await review.stack.get(tx.id)
    assert resumed.mpesa_request is not None
    assert resumed.mpesa_request.checkout_request_id == checkout
    assert resumed.mpesa_request.status == E.SUCCEEDED  # STK Query must still agree

    credited = await review.stack.settle(tx.id)
    assert credited.status is S.COMPLETED, credited.failure_reason
    assert credited.mpesa_request is not None and credited.mpesa_request.status == E.CONFIRMED
    assert await review.stack.deriv_transfers(str(tx.id)) == 1
    [*_, (actor, action_name, details)] = await audit_actions(review, tx.id)
    assert (actor, action_name) == ("operator:abel", "review.approved")
    answer = details["provider_answer"]
    assert answer["api"] == "pull_transactions" and answer["checkout_request_id"] == checkout
    assert len(answer["listed_under_reference"]) == 1


async def test_an_unpaid_push_whose_answer_was_lost_fails_once_it_can_no_longer_be_paid(
    review: Review,
) -> None:
    tx = await lost_push(review, "254722041032")  # the customer cancels: nothing is paid
    retry = await propose(review, tx.id, RETRY)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await approve(review, retry.action_id)
    assert reason_of(denied.value) == "EVIDENCE_DENIED"
    assert "no payment" in (denied.value.details() or "")

    action = await propose(review, tx.id, FAIL)
    review.clock.set(tx.updated_at + LOST_PUSH_WAIT - timedelta(seconds=1))
    with pytest.raises(grpc.aio.AioRpcError) as early:
        await approve(review, action.action_id)
    assert early.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "may still be paid" in (early.value.details() or "")
    assert (await review.stack.get(tx.id)).status is S.NEEDS_REVIEW  # nothing changed

    review.clock.set(tx.updated_at + LOST_PUSH_WAIT)
    done = await approve(review, action.action_id)
    assert done.status == pb.REVIEW_ACTION_STATUS_EXECUTED
    failed = await review.stack.get(tx.id)
    assert failed.status is S.FAILED and failed.mpesa_request is None
    assert await review.stack.deriv_transfers(str(tx.id)) == 0
    [*_, (_, action_name, details)] = await audit_actions(review, tx.id)
    assert action_name == "review.approved"
    assert details["provider_answer"]["listed_under_reference"] == []


async def test_a_paid_push_whose_answer_and_callback_were_lost_is_taken_in_on_m_pesa_s_list(
    review: Review,
) -> None:
    tx = await lost_push(review, "254722071234", callback_lost=True)  # paid; no callback ever
    retry = await propose(review, tx.id, RETRY)
    review.clock.set(tx.updated_at + LOST_PUSH_WAIT - timedelta(seconds=1))
    with pytest.raises(grpc.aio.AioRpcError) as early:  # a callback may still come: wait for it
        await approve(review, retry.action_id)
    assert early.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "on M-Pesa's list alone" in (early.value.details() or "")

    review.clock.set(tx.updated_at + LOST_PUSH_WAIT)
    done = await approve(review, retry.action_id)
    assert done.status == pb.REVIEW_ACTION_STATUS_EXECUTED
    credited = await review.stack.settle(tx.id)
    assert credited.status is S.COMPLETED, credited.failure_reason
    request = credited.mpesa_request
    assert request is not None and request.status == E.CONFIRMED
    books = await review.stack.mpesa_books()
    [charge] = [s for s in books["stk"]["transactions"] if s["charged"]]
    assert request.mpesa_receipt_number == charge["receipt"]  # the payment M-Pesa made, once
    assert request.checkout_request_id == f"PULL-{charge['receipt']}"
    assert await review.stack.deriv_transfers(str(tx.id)) == 1
    [*_, (_, action_name, details)] = await audit_actions(review, tx.id)
    assert action_name == "review.approved"
    assert details["provider_answer"]["taken_in_as_listed"] == charge["receipt"]

"""The review queue's later actions over real sockets (issue 17, item 1): a withdrawal completed on
the M-Pesa receipt an operator supplies (checked by Daraja Transaction Status, refused when M-Pesa
denies it), a deposit failed only when STK Query proves it unpaid, stuck steps retried under their
own ids, and role refusals in the audit chain."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from sqlalchemy import select, update

from domain.payments.attachments import EvidenceStatus as E
from domain.payments.status import TransactionStatus as S
from domain.shared.ids import TransactionId, UserId
from penpay.ops.v1 import ops_pb2 as pb
from persistence.audit import verify_chain
from persistence.tables import audit_logs, users
from tests.mpesa_adapter.conftest import phone
from tests.ops.conftest import Review, bearer
from tests.ops.test_review_queue import audit_actions, reason_of, user_token
from tests.sagas.harness import CLIENT_LOGINID

pytestmark = pytest.mark.integration

RESOLVE = pb.REVIEW_ACTION_KIND_RESOLVE_COMPLETED
FAIL = pb.REVIEW_ACTION_KIND_FAIL
RETRY = pb.REVIEW_ACTION_KIND_RETRY


async def mpesa_fault(review: Review, **rule: Any) -> None:
    url = f"{review.stack.mpesa_sim.base_url}/__control__/faults"
    async with review.stack.http.post(url, json=rule) as response:
        assert response.status == 201, await response.text()


async def clear_mpesa_faults(review: Review) -> None:
    async with review.stack.http.delete(f"{review.stack.mpesa_sim.base_url}/__control__/faults") as response:
        assert response.status == 200


async def b2c_book(review: Review, ocid: str) -> dict[str, Any]:
    url = f"{review.stack.mpesa_sim.base_url}/__control__/books/b2c/{ocid}"
    async with review.stack.http.get(url) as response:
        assert response.status == 200, await response.text()
        book: dict[str, Any] = await response.json()
        return book


async def propose(
    review: Review, tx_id: TransactionId, kind: pb.ReviewActionKind, who: str = "olga", **evidence: Any
) -> pb.ReviewAction:
    request = pb.ProposeReviewActionRequest(transaction_id=str(tx_id), kind=kind, reason="per the provider")
    if "receipt" in evidence:
        request.mpesa_receipt = evidence["receipt"]
    reply = await review.ops.ProposeReviewAction(request, metadata=review.staff(who, "operator"))
    action: pb.ReviewAction = reply.action
    return action


async def approve(review: Review, action_id: str, who: str = "abel") -> pb.ReviewAction:
    reply = await review.ops.ApproveReviewAction(
        pb.ApproveReviewActionRequest(action_id=action_id), metadata=review.staff(who, "approver")
    )
    action: pb.ReviewAction = reply.action
    return action


async def stuck_payout(review: Review, user: UserId | None = None) -> tuple[TransactionId, str, str]:
    """A withdrawal M-Pesa paid whose B2C result and every Transaction Status answer were lost:
    the saga's queries run out and a person must decide. (id, OriginatorConversationID, receipt)."""
    stack = review.stack
    user = user or await stack.user()
    await mpesa_fault(review, kind="drop", api="b2c", count=None)
    await mpesa_fault(review, kind="drop", api="status", count=None)
    tx = await stack.withdrawal(user, 10_00)
    await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=await stack.withdrawal_code()
    )
    done = await stack.settle(tx.id)
    assert done.status is S.NEEDS_REVIEW, done.failure_reason
    assert "Transaction Status" in (done.failure_reason or "")
    await clear_mpesa_faults(review)
    assert done.mpesa_disbursement is not None
    ocid = done.mpesa_disbursement.originator_conversation_id
    book = await b2c_book(review, ocid)
    assert book["paid"], book
    return tx.id, ocid, str(book["receipt"])


async def test_a_withdrawal_completes_on_a_receipt_transaction_status_confirms(review: Review) -> None:
    tx_id, _, receipt = await stuck_payout(review)
    # a receipt M-Pesa has never issued: Transaction Status fails, the proposal is refused
    bogus = await propose(review, tx_id, RESOLVE, receipt="QZZ0000000")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await approve(review, bogus.action_id)
    assert denied.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(denied.value) == "EVIDENCE_DENIED"
    assert (await review.stack.get(tx_id)).status is S.NEEDS_REVIEW

    good = await propose(review, tx_id, RESOLVE, receipt=receipt)
    done = await approve(review, good.action_id)
    assert done.status == pb.REVIEW_ACTION_STATUS_EXECUTED
    tx = await review.stack.get(tx_id)
    assert tx.status is S.COMPLETED
    assert tx.mpesa_disbursement is not None
    assert (tx.mpesa_disbursement.status, tx.mpesa_disbursement.transaction_receipt) == (E.CONFIRMED, receipt)

    records = await audit_actions(review, tx_id)
    assert [action for _, action, _ in records] == [
        "review.proposed",
        "review.refused",
        "review.proposed",
        "review.approved",
    ]
    refused = records[1][2]
    assert (refused["proposed_by"], refused["approved_by"]) == ("operator:olga", "operator:abel")
    approved = records[3][2]
    assert approved["mpesa_receipt"] == receipt
    assert (approved["proposed_by"], approved["approved_by"]) == ("operator:olga", "operator:abel")
    assert records[3][0] == "operator:abel"  # the approval is recorded as the approver's act
    async with review.stack.engine.connect() as connection:
        assert (await verify_chain(connection)).ok


async def test_a_receipt_of_another_payout_is_refused(review: Review) -> None:
    user = await review.stack.user()
    first, _, first_receipt = await stuck_payout(review, user)
    second, _, _ = await stuck_payout(review, user)
    wrong = await propose(review, second, RESOLVE, receipt=first_receipt)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await approve(review, wrong.action_id)
    assert reason_of(denied.value) == "EVIDENCE_DENIED"
    assert (await review.stack.get(second)).status is S.NEEDS_REVIEW
    assert (await review.stack.get(first)).status is S.NEEDS_REVIEW  # nothing settled on the way


async def test_a_receipt_answer_naming_no_id_of_ours_is_taken_only_for_our_payee(review: Review) -> None:
    """Transaction Status may answer about a receipt naming neither OriginatorConversationID nor
    ConversationID: then the amount alone (the same here) proves nothing, the payee must be ours."""
    stack = review.stack
    user = await stack.user(phone=phone())
    first, _, first_receipt = await stuck_payout(review, user)
    async with stack.engine.begin() as connection:  # the user's number changes: a second payee
        await connection.execute(update(users).where(users.c.id == user.value).values(phone=phone()))
    second, _, second_receipt = await stuck_payout(review, user)
    assert (await stack.get(first)).phone != (await stack.get(second)).phone
    await mpesa_fault(review, kind="anonymous_result", api="status", count=None)

    typo = await propose(review, second, RESOLVE, receipt=first_receipt)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await approve(review, typo.action_id)
    assert reason_of(denied.value) == "EVIDENCE_DENIED"
    assert "PHONE_MISMATCH" in (denied.value.details() or ""), denied.value.details()
    for tx_id in (first, second):
        tx = await stack.get(tx_id)
        assert tx.status is S.NEEDS_REVIEW  # nothing changed on either payout
        assert tx.mpesa_disbursement is not None and tx.mpesa_disbursement.transaction_receipt is None
    assert [action for _, action, _ in await audit_actions(review, second)] == [
        "review.proposed",
        "review.refused",
    ]

    right = await propose(review, second, RESOLVE, receipt=second_receipt)
    assert (await approve(review, right.action_id)).status == pb.REVIEW_ACTION_STATUS_EXECUTED
    tx = await stack.get(second)
    assert tx.status is S.COMPLETED
    assert tx.mpesa_disbursement is not None
    assert (tx.mpesa_disbursement.status, tx.mpesa_disbursement.transaction_receipt) == (
        E.CONFIRMED,
        second_receipt,
    )

    # That receipt is now the second payout's: offered for the first, it is refused without asking.
    again = await propose(review, first, RESOLVE, receipt=second_receipt)
    with pytest.raises(grpc.aio.AioRpcError) as held:
        await approve(review, again.action_id)
    assert reason_of(held.value) == "EVIDENCE_DENIED"
    assert "another payout" in (held.value.details() or ""), held.value.details()
    assert (await stack.get(first)).status is S.NEEDS_REVIEW


async def stuck_push(review: Review, phone: str) -> TransactionId:
    """A deposit whose STK callback was lost and whose STK Queries were all held back."""
    stack = review.stack
    user = await stack.user(phone=phone)
    await mpesa_fault(review, kind="spike_arrest", api="stk_query", count=None)
    tx = await stack.deposit(user, 1_300)
    done = await stack.settle(tx.id)
    assert done.status is S.NEEDS_REVIEW, done.failure_reason
    assert done.mpesa_request is not None and done.mpesa_request.status == E.SENT
    await clear_mpesa_faults(review)
    return tx.id


async def test_a_deposit_with_no_mpesa_answer_fails_only_when_stk_query_says_unpaid(review: Review) -> None:
    tx_id = await stuck_push(review, "254700031032")  # callback lost; the customer cancelled
    action = await propose(review, tx_id, FAIL)
    done = await approve(review, action.action_id)
    assert done.status == pb.REVIEW_ACTION_STATUS_EXECUTED
    tx = await review.stack.get(tx_id)
    assert tx.status is S.FAILED
    assert tx.mpesa_request is not None and tx.mpesa_request.status == E.FAILED
    assert await review.stack.deriv_transfers(str(tx_id)) == 0
    [*_, (actor, action_name, details)] = await audit_actions(review, tx_id)
    assert (actor, action_name) == ("operator:abel", "review.approved")
    assert details["provider_answer"]["answer"] == "NOT_PAID"  # STK Query's word, kept


async def test_a_paid_deposit_is_not_failed_and_a_retry_finishes_it(review: Review) -> None:
    tx_id = await stuck_push(review, "254700031234")  # callback lost; the customer paid
    action = await propose(review, tx_id, FAIL)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await approve(review, action.action_id)
    assert reason_of(denied.value) == "EVIDENCE_DENIED"
    assert "paid" in (denied.value.details() or "")
    assert (await review.stack.get(tx_id)).status is S.NEEDS_REVIEW

    # retry: back to OUTCOME_UNKNOWN; the saga asks STK Query again (same CheckoutRequestID)
    retry = await propose(review, tx_id, RETRY)
    await approve(review, retry.action_id)
    assert (await review.stack.get(tx_id)).status is S.OUTCOME_UNKNOWN
    done = await review.stack.settle(tx_id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await review.stack.deriv_transfers(str(tx_id)) == 1


async def test_a_stuck_payout_retried_is_resolved_under_its_one_id(review: Review) -> None:
    tx_id, ocid, _ = await stuck_payout(review)
    retry = await propose(review, tx_id, RETRY)
    await approve(review, retry.action_id)
    done = await review.stack.settle(tx_id)
    assert done.status is S.COMPLETED, done.failure_reason
    book = await b2c_book(review, ocid)
    assert done.mpesa_disbursement is not None
    assert done.mpesa_disbursement.transaction_receipt == book["receipt"]  # the one payout, not a new one


async def test_role_refusals_are_in_the_audit_chain(review: Review) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as viewer:
        await review.ops.ProposeReviewAction(
            pb.ProposeReviewActionRequest(transaction_id="0" * 32, kind=FAIL, reason="x"),
            metadata=review.staff("vera", "viewer"),
        )
    assert reason_of(viewer.value) == "ROLE_REQUIRED"
    token = await user_token(review)
    with pytest.raises(grpc.aio.AioRpcError) as user:
        await review.ops.ListReviewQueue(pb.ListReviewQueueRequest(), metadata=bearer(token))
    assert user.value.code() is grpc.StatusCode.PERMISSION_DENIED

    async with review.stack.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(audit_logs.c.actor, audit_logs.c.subject_id, audit_logs.c.details)
                .where(audit_logs.c.action == "access.refused")
                .order_by(audit_logs.c.id)
            )
        ).all()
        assert (await verify_chain(connection)).ok
    assert [(r.actor.split(":")[0], r.subject_id) for r in rows] == [
        ("operator", "/penpay.ops.v1.OpsService/ProposeReviewAction"),
        ("user", "/penpay.ops.v1.OpsService/ListReviewQueue"),
    ]
    assert rows[0].actor == "operator:vera"
    assert json.loads(rows[0].details)["reason"] == "ROLE_REQUIRED"
    assert json.loads(rows[1].details)["reason"] == "OPERATOR_ROLE_REQUIRED"


async def test_a_rest_deposit_is_checked_on_deriv_s_record_of_our_request_id(review: Review) -> None:
    """On the REST API a transfer is proven by Deriv's record of our request id (GET
    transfer/{request_id}, resolve-only), not by a statement line that merely carries our reference."""
    stack = review.stack
    user = await stack.rest_user()
    await stack.rest_fault(kind="forbidden", endpoint="transfer")  # refused, never executed
    tx = await stack.deposit(user, 2_600)
    refused = await stack.settle(tx.id)
    assert refused.status is S.NEEDS_REVIEW, refused.failure_reason
    async with stack.http.delete(f"{stack.rest_sim.base_url}/__control__/faults") as response:
        assert response.status == 200
    # someone pays the same client by hand over v3 with our reference: not our REST transfer
    await review.pay_by_hand(CLIENT_LOGINID, "20.00", f"PenPay {tx.id}")
    [manual] = (await review.deriv_control("GET", f"/books/transfers?description_contains={tx.id}"))[
        "transfers"
    ]
    action = await review.ops.ProposeReviewAction(
        pb.ProposeReviewActionRequest(
            transaction_id=str(tx.id),
            kind=RESOLVE,
            reason="a transfer with our reference",
            deriv_transaction_id=int(manual["debit_transaction_id"]),
        ),
        metadata=review.staff("olga", "operator"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await approve(review, action.action.action_id)
    assert reason_of(denied.value) == "EVIDENCE_DENIED"
    assert "has no transfer" in (denied.value.details() or "")
    assert (await stack.get(tx.id)).status is S.NEEDS_REVIEW

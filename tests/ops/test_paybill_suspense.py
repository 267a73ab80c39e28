"""Paybill payments in suspense, worked through OpsService over real sockets: listed for staff, given
to their owner only by two different people, then credited at Deriv as any deposit; every step in
the audit chain with both names."""

from __future__ import annotations

import json

import grpc
import pytest
from sqlalchemy import select

from domain.payments.status import TransactionStatus as S
from domain.shared.ids import TransactionId
from mpesa_adapter.client import DarajaClient
from penpay.ops.v1 import ops_pb2 as pb
from persistence.tables import audit_logs, c2b_payments, mpesa_callback_reviews
from tests.ops.conftest import Review
from tests.ops.test_review_queue import reason_of, user_token

pytestmark = pytest.mark.integration


async def _suspense_payment(review: Review, account: str, shillings: int) -> str:
    stack = review.stack
    async with DarajaClient(stack.daraja_config) as client:
        await client.register_c2b_urls()
    body = {"account": account, "amount": shillings, "phone": "254712345678", "validation": False}
    async with stack.http.post(f"{stack.mpesa_sim.base_url}/__control__/c2b/pay", json=body) as response:
        assert response.status == 201, await response.text()
        paid = await response.json()
    await stack.mpesa_sim.drain()
    return str(paid["TransID"])


async def _row(review: Review, trans_id: str) -> object:
    async with review.stack.engine.connect() as conn:
        return (await conn.execute(select(c2b_payments).where(c2b_payments.c.trans_id == trans_id))).first()


async def test_suspense_goes_to_its_owner_only_with_two_people_and_is_credited_once(review: Review) -> None:
    stack = review.stack
    user = await stack.user()
    reference = await stack.paybill.reference_for(user)
    trans_id = await _suspense_payment(review, "my account", 2_600)  # no validation, unknown reference

    listed = await review.ops.ListPaybillSuspense(
        pb.ListPaybillSuspenseRequest(), metadata=review.staff("vic", "viewer")
    )
    [item] = [i for i in listed.items if i.trans_id == trans_id]
    assert (item.amount.amount_cents, item.bill_ref, item.proposed_by) == (2_600_00, "my account", "")
    assert "*" in item.msisdn_shown and "no validation" in item.reason
    with pytest.raises(grpc.aio.AioRpcError) as as_user:
        await review.ops.ListPaybillSuspense(
            pb.ListPaybillSuspenseRequest(),
            metadata=(("authorization", f"Bearer {await user_token(review)}"),),
        )
    assert as_user.value.code() is grpc.StatusCode.PERMISSION_DENIED

    alice = review.staff("alice", "operator", "approver")
    proposed = await review.ops.ProposePaybillAssignment(
        pb.ProposePaybillAssignmentRequest(trans_id=trans_id, reference=reference, reason="customer's SMS"),
        metadata=alice,
    )
    assert proposed.user_id == str(user)
    with pytest.raises(grpc.aio.AioRpcError) as own:
        await review.ops.ApprovePaybillAssignment(
            pb.ApprovePaybillAssignmentRequest(trans_id=trans_id), metadata=alice
        )
    assert reason_of(own.value) == "FOUR_EYES_REQUIRED"
    assert (await _row(review, trans_id)).status == "SUSPENSE"  # type: ignore[attr-defined]

    approved = await review.ops.ApprovePaybillAssignment(
        pb.ApprovePaybillAssignmentRequest(trans_id=trans_id), metadata=review.staff("bob", "approver")
    )

    tx_id = TransactionId.from_str(approved.transaction_id, field="transaction_id")
    done = await stack.settle(tx_id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert done.user_id == user and done.amount.amount_minor == 2_600_00
    assert await stack.deriv_transfers(str(tx_id)) == 1
    row = await _row(review, trans_id)
    assert (row.status, row.resolved_by) == ("DEPOSIT", "operator:bob")  # type: ignore[attr-defined]
    with pytest.raises(grpc.aio.AioRpcError) as again:  # once: it is no longer in suspense
        await review.ops.ApprovePaybillAssignment(
            pb.ApprovePaybillAssignmentRequest(trans_id=trans_id), metadata=review.staff("carol", "approver")
        )
    assert reason_of(again.value) == "REVIEW_ACTION_NOT_POSSIBLE"
    async with stack.engine.connect() as conn:
        audits = [
            (r.action, json.loads(r.details))
            for r in await conn.execute(
                select(audit_logs.c.action, audit_logs.c.details)
                .where(audit_logs.c.subject_id == trans_id)
                .order_by(audit_logs.c.id)
            )
        ]
        reviews = (
            await conn.execute(
                select(mpesa_callback_reviews.c.status).where(
                    mpesa_callback_reviews.c.correlation_id == trans_id
                )
            )
        ).all()
    assert [(a, d["proposed_by"], d["approved_by"]) for a, d in audits] == [
        ("review.paybill.assign_proposed", "operator:alice", None),
        ("review.paybill.four_eyes_refused", "operator:alice", "operator:alice"),
        ("review.paybill.assign_approved", "operator:alice", "operator:bob"),
    ]
    assert [r.status for r in reviews] == ["RESOLVED"]


async def test_an_account_typed_as_a_phone_number_is_listed_masked(review: Review) -> None:
    """Payers often type their own number as the account: no staff list shows it whole."""
    trans_id = await _suspense_payment(review, "0712345678", 1_000)
    for role in ("viewer", "operator", "approver"):
        listed = await review.ops.ListPaybillSuspense(
            pb.ListPaybillSuspenseRequest(), metadata=review.staff("vic", role)
        )
        [item] = [i for i in listed.items if i.trans_id == trans_id]
        assert item.bill_ref == "0712***678" and "712345678" not in str(listed)

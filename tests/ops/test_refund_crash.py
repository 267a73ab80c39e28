"""A refund executes once across a killed worker: `penpay worker saga` (a real process on MariaDB and
Redis Streams) SIGKILLs itself at each refund checkpoint, is restarted, and the customer is paid
back exactly once, never twice, with the ledger and the simulators' books agreeing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from application.payments.decisions import Step
from domain.payments.status import TransactionStatus as S
from penpay.ops.v1 import ops_pb2 as pb
from tests.ops.conftest import Review
from tests.ops.test_review_queue import REFUND, RETRY, refused_deposit
from tests.sagas.test_crash_recovery import Worker, assert_ledger_balanced, relay_until

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(review: Review, key_prefix: str, tmp_path: Path) -> Iterator[Worker]:
    process = Worker(review.stack, key_prefix, tmp_path)
    yield process
    process.stop()


@pytest.mark.parametrize(
    ("crash_at", "outcome"),
    [
        ("refund.b2c.before_commit", S.REVERSED),  # the one send not marked yet: sent after the restart
        ("refund.b2c.after_call", S.REVERSED),  # sent and accepted, answer not stored: resolved, not resent
    ],
)
async def test_a_refund_is_paid_once_across_a_killed_worker(
    crash_at: str, outcome: S, review: Review, worker: Worker
) -> None:
    stack = review.stack
    tx_id = await refused_deposit(review)
    worker.start(crash_at=crash_at)
    proposed = await review.ops.ProposeReviewAction(
        pb.ProposeReviewActionRequest(
            transaction_id=str(tx_id), kind=REFUND, reason="Deriv refuses for good"
        ),
        metadata=review.staff("olga", "operator"),
    )
    await review.ops.ApproveReviewAction(
        pb.ApproveReviewActionRequest(action_id=proposed.action.action_id),
        metadata=review.staff("amos", "approver"),
    )
    await stack.relay.relay_once()

    assert await worker.killed_by_itself() == -9

    worker.start()
    status = await relay_until(stack, tx_id, worker, {S.REVERSED}, timeout=40)
    assert status is outcome, worker.tail()
    refund = (await stack.get(tx_id)).mpesa_disbursement
    assert refund is not None
    paid = [b for b in (await stack.mpesa_books())["b2c"]["transactions"] if b.get("paid")]
    assert [b["originator_conversation_id"] for b in paid] == [refund.originator_conversation_id]
    await assert_ledger_balanced(stack)


async def test_a_refund_lost_before_its_call_is_never_sent_blindly(review: Review, worker: Worker) -> None:
    """Killed after marking the send, before making it: Daraja never heard of it, Transaction Status
    cannot settle it, and the refund is not sent again on a guess: it waits for a person, nothing
    paid. Two people then approve a RETRY: sent again under its one id, paid once."""
    stack = review.stack
    tx_id = await refused_deposit(review)
    worker.start(crash_at="refund.b2c.before_call")
    proposed = await review.ops.ProposeReviewAction(
        pb.ProposeReviewActionRequest(
            transaction_id=str(tx_id), kind=REFUND, reason="Deriv refuses for good"
        ),
        metadata=review.staff("olga", "operator"),
    )
    await review.ops.ApproveReviewAction(
        pb.ApproveReviewActionRequest(action_id=proposed.action.action_id),
        metadata=review.staff("amos", "approver"),
    )
    await stack.relay.relay_once()
    assert await worker.killed_by_itself() == -9

    worker.start()
    deadline = time.monotonic() + 30
    while True:
        await stack.relay.relay_once()
        async with stack.uow() as uow:
            steps = await uow.saga_steps.get(tx_id)
        query = steps.get(Step.REFUND_B2C_QUERY.value)
        if query is not None and query.attempts >= stack.saga.policy.max_attempts:
            break
        assert time.monotonic() < deadline, worker.tail()
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.5)  # the worker's sweeper looks again: nothing more is asked or sent
    tx = await stack.get(tx_id)
    assert tx.status is S.NEEDS_REVIEW
    assert tx.mpesa_disbursement is not None and tx.mpesa_disbursement.status == "SENT"
    assert not [b for b in (await stack.mpesa_books())["b2c"]["transactions"] if b.get("paid")]
    async with stack.uow() as uow:
        assert (await uow.saga_steps.get(tx_id))[Step.REFUND_B2C.value].attempts == 1

    retry = await review.ops.ProposeReviewAction(
        pb.ProposeReviewActionRequest(transaction_id=str(tx_id), kind=RETRY, reason="M-Pesa never got it"),
        metadata=review.staff("olga", "operator"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as own:
        await review.ops.ApproveReviewAction(
            pb.ApproveReviewActionRequest(action_id=retry.action.action_id),
            metadata=review.staff("olga", "operator", "approver"),
        )
    assert own.value.code() is grpc.StatusCode.PERMISSION_DENIED
    await review.ops.ApproveReviewAction(
        pb.ApproveReviewActionRequest(action_id=retry.action.action_id),
        metadata=review.staff("amos", "approver"),
    )
    assert await relay_until(stack, tx_id, worker, {S.REVERSED}, timeout=40) is S.REVERSED, worker.tail()
    paid = [b for b in (await stack.mpesa_books())["b2c"]["transactions"] if b.get("paid")]
    assert [b["originator_conversation_id"] for b in paid] == [
        tx.mpesa_disbursement.originator_conversation_id
    ]
    await assert_ledger_balanced(stack)


async def test_a_retried_payout_is_paid_once_across_a_killed_worker(review: Review, worker: Worker) -> None:
    """RETRY moves money when the B2C was never accepted: the saga sends it again under its one
    OriginatorConversationID. Killed after that send, before recording it: the restarted worker
    sends the same id again, Daraja refuses the duplicate, and the customer is paid once."""
    stack = review.stack
    user = await stack.user()
    control = f"{stack.mpesa_sim.base_url}/__control__/faults"
    async with stack.http.post(
        control, json={"kind": "internal_error", "api": "b2c", "count": None}
    ) as response:
        assert response.status == 201, await response.text()
    tx = await stack.withdrawal(user, 10_00)
    await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=await stack.withdrawal_code()
    )
    stuck = await stack.settle(tx.id)
    assert stuck.status is S.NEEDS_REVIEW, stuck.failure_reason
    assert stuck.mpesa_disbursement is not None and not stuck.mpesa_disbursement.conversation_id
    async with stack.http.delete(control) as response:
        assert response.status == 200
    assert not [b for b in (await stack.mpesa_books())["b2c"]["transactions"] if b.get("paid")]

    worker.start(crash_at="withdrawal.b2c.after_call")
    retry = await review.ops.ProposeReviewAction(
        pb.ProposeReviewActionRequest(transaction_id=str(tx.id), kind=RETRY, reason="M-Pesa is back"),
        metadata=review.staff("olga", "operator"),
    )
    await review.ops.ApproveReviewAction(
        pb.ApproveReviewActionRequest(action_id=retry.action.action_id),
        metadata=review.staff("amos", "approver"),
    )
    await stack.relay.relay_once()
    assert await worker.killed_by_itself() == -9

    worker.start()
    assert await relay_until(stack, tx.id, worker, {S.COMPLETED}, timeout=40) is S.COMPLETED, worker.tail()
    paid = [b for b in (await stack.mpesa_books())["b2c"]["transactions"] if b.get("paid")]
    assert [b["originator_conversation_id"] for b in paid] == [
        stuck.mpesa_disbursement.originator_conversation_id
    ]
    await assert_ledger_balanced(stack)

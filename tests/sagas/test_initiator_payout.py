"""ConfirmWithdrawal sends the withdrawal's B2C payout itself: the B2C's attempt is committed with the
debit, the conversion and the float's reservation (no commit of a saga worker's for it), the payout
goes right after, and its answer is recorded by the saga's own code. Whatever cuts it short leaves
the attempt, which every other process treats as a payout in flight: sent again only with the same
OriginatorConversationID, after the call grace, so M-Pesa pays once (MariaDB, Redis Streams, both
simulators over sockets)."""

from __future__ import annotations

import pytest

from application.payments.decisions import Step
from application.payments.saga import SagaRunner
from application.payments.withdrawals import WithdrawalOrchestrator
from domain.payments.status import TransactionStatus as S
from domain.payments.transaction import Transaction
from domain.shared.ids import TransactionId, UserId
from tests.sagas.harness import Stack
from tests.sagas.test_initiator_push import stopping_at

pytestmark = pytest.mark.integration

PAID = "254712345678"  # the simulator pays this phone at once


def confirming_with(stack: Stack, saga: SagaRunner) -> WithdrawalOrchestrator:
    """The stack's ConfirmWithdrawal, its payout sent through `saga` (a test's checkpoint)."""
    w = stack.withdrawals
    return WithdrawalOrchestrator(
        unit_of_work=w._uow, rates=w._rates, deriv=w._deriv, saga=saga, transfer_limits=w._limits
    )


async def confirmed(
    stack: Stack, user: UserId, tx_id: TransactionId, by: WithdrawalOrchestrator | None = None
) -> Transaction:
    """ConfirmWithdrawal, returned once the payout it sent has its answer recorded (or was cut short)."""
    orchestrator = by or stack.withdrawals
    tx = await orchestrator.confirm_withdrawal(
        user_id=user, transaction_id=tx_id, verification_code=await stack.withdrawal_code()
    )
    await orchestrator._saga.drain()
    return tx


async def test_confirm_withdrawal_sends_the_payout_its_attempt_committed_with_the_debit(
    stack: Stack,
) -> None:
    user = await stack.user(phone=PAID)
    tx = await stack.withdrawal(user, 10_00)

    answer = await confirmed(stack, user, tx.id)

    assert answer.status is S.MPESA_DISBURSEMENT_SENT  # the answer is the debit as committed
    assert answer.mpesa_disbursement is not None and not answer.mpesa_disbursement.conversation_id
    accepted = await stack.get(tx.id)
    assert accepted.mpesa_disbursement is not None and accepted.mpesa_disbursement.conversation_id
    assert await stack.attempts(tx.id, Step.B2C) == 1
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.payouts_to(PAID) == 1
    assert await stack.attempts(tx.id, Step.B2C) == 1  # no process sent one of its own


async def test_a_payout_whose_process_died_before_sending_it_goes_once_after_the_grace(stack: Stack) -> None:
    """Killed between the commit and the call: nothing went out, and no other process can know it;
    after the call grace the saga sends it with the same OriginatorConversationID (M-Pesa refuses a
    duplicate of one it has), so the user is paid once."""
    orchestrator = confirming_with(stack, stopping_at(stack, "withdrawal.b2c.before_call"))
    user = await stack.user(phone=PAID)
    tx = await stack.withdrawal(user, 10_00)

    await confirmed(stack, user, tx.id, by=orchestrator)

    cut = await stack.get(tx.id)
    assert cut.status is S.MPESA_DISBURSEMENT_SENT
    assert cut.mpesa_disbursement is not None and not cut.mpesa_disbursement.conversation_id
    assert await stack.payouts_to(PAID) == 0
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.payouts_to(PAID) == 1
    assert await stack.attempts(tx.id, Step.B2C) == 2  # the cut one and the saga's, under one id


async def test_a_payout_sent_whose_answer_died_with_its_process_is_paid_once(stack: Stack) -> None:
    """Killed after Daraja accepted the payout, before its answer was stored: M-Pesa pays and posts
    its result, and a send again after the grace carries the same OriginatorConversationID. One
    payout."""
    orchestrator = confirming_with(stack, stopping_at(stack, "withdrawal.b2c.after_call"))
    user = await stack.user(phone=PAID)
    tx = await stack.withdrawal(user, 10_00)

    await confirmed(stack, user, tx.id, by=orchestrator)

    cut = await stack.get(tx.id)
    assert cut.mpesa_disbursement is not None and not cut.mpesa_disbursement.conversation_id
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.payouts_to(PAID) == 1
    assert await stack.deriv_transfers(str(tx.id)) == 1  # one debit, no refund

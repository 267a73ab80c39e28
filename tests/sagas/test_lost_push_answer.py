"""An STK push whose answer never reached PenPay (the simulator carries it out and answers
500.003.1001): the saga looks for it in M-Pesa's own records before asking a person. A paid push is
listed by Pull Transactions under the AccountReference it carried, and its callback, parked for want
of the CheckoutRequestID, names the receipt: the saga records that id, takes the callback in and
credits the deposit after STK Query agrees. An unpaid one goes to people once the lookups run out
(MariaDB, Redis Streams, both simulators over sockets)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from application.payments.decisions import Step
from domain.payments.attachments import EvidenceStatus as E
from domain.payments.status import TransactionStatus as S
from persistence.tables import mpesa_callback_reviews
from tests.sagas.harness import FAST_POLICY, Stack

pytestmark = pytest.mark.integration


async def parked(stack: Stack) -> list[tuple[str, str]]:
    t = mpesa_callback_reviews
    async with stack.engine.connect() as connection:
        rows = await connection.execute(
            select(t.c.correlation_id, t.c.status).where(t.c.kind == "stk").where(t.c.reason == "UNKNOWN_ID")
        )
        return [(r.correlation_id, r.status) for r in rows]


async def test_a_paid_push_whose_answer_was_lost_is_found_and_credited(stack: Stack) -> None:
    user = await stack.user(phone="254722051234")  # the customer pays
    await stack.mpesa_fault(kind="answer_lost", api="stk")
    tx = await stack.deposit(user, 1_300)
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED, done.failure_reason
    [(checkout, status)] = await parked(stack)
    assert status == "ADOPTED"
    assert done.mpesa_request is not None
    assert done.mpesa_request.checkout_request_id == checkout  # the id the lost answer carried
    assert done.mpesa_request.status == E.CONFIRMED and done.mpesa_request.mpesa_receipt_number
    assert await stack.deriv_transfers(str(tx.id)) == 1
    found_after = await stack.attempts(tx.id, Step.PUSH_LOOKUP)
    assert found_after < FAST_POLICY.max_attempts  # found before they ran out


async def test_an_unpaid_push_whose_answer_was_lost_goes_to_people(stack: Stack) -> None:
    user = await stack.user(phone="254722051032")  # the customer cancels
    await stack.mpesa_fault(kind="answer_lost", api="stk")
    tx = await stack.deposit(user, 1_300)
    done = await stack.settle(tx.id)
    assert done.status is S.NEEDS_REVIEW
    assert "did not give its CheckoutRequestID back" in (done.failure_reason or "")
    assert done.mpesa_request is None
    assert await stack.attempts(tx.id, Step.PUSH_LOOKUP) == FAST_POLICY.max_attempts
    [(_, status)] = await parked(stack)  # the cancellation's callback: for a person
    assert status == "OPEN"
    assert await stack.deriv_transfers(str(tx.id)) == 0


async def test_m_pesa_s_list_unreadable_counts_the_lookups_and_leaves_it_to_people(stack: Stack) -> None:
    user = await stack.user(phone="254722061234")  # the customer pays
    await stack.mpesa_fault(kind="answer_lost", api="stk")
    await stack.mpesa_fault(kind="pull_failure", api="pull_query", count=None)
    tx = await stack.deposit(user, 1_300)
    done = await stack.settle(tx.id)
    assert done.status is S.NEEDS_REVIEW
    assert done.mpesa_request is None  # never taken for "no payment"
    assert await stack.attempts(tx.id, Step.PUSH_LOOKUP) == FAST_POLICY.max_attempts
    await stack.clear_mpesa_faults()

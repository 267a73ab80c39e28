"""InitiateDeposit sends the deposit's STK push itself: the push's intent is committed with the
deposit (no commit of a saga worker's for it), the push goes right after, and its answer is recorded
by the saga's own code. Whatever cuts it short leaves the intent, which every other process treats as
a push in flight: never sent again blindly (MariaDB, Redis Streams, both simulators over sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from application.payments.decisions import Step
from application.payments.saga import SagaRunner
from domain.payments.status import TransactionStatus as S
from domain.shared.ids import TransactionId
from persistence.tables import mpesa_callback_reviews
from tests.sagas.harness import Stack
from tests.sagas.test_early_callback import AnswerAfterTheCallback

pytestmark = pytest.mark.integration

PAYS = "254722051234"  # the customer pays


class Killed(Exception):
    """The process stops at this checkpoint: nothing after it runs, nothing in memory survives."""


def stopping_at(stack: Stack, point: str, **ports: Any) -> SagaRunner:
    def checkpoint(name: str) -> None:
        if name == point:
            raise Killed(name)

    return SagaRunner(
        unit_of_work=stack.uow,
        mpesa=ports.get("mpesa", stack.saga._mpesa),
        deriv_deposits=stack.saga._deriv_deposits,
        deriv_withdrawals=stack.saga._deriv_withdrawals,
        policy=stack.saga.policy,
        checkpoint=checkpoint,
    )


async def pushes_to(stack: Stack, phone: str) -> int:
    """STK pushes the M-Pesa simulator received for this phone (charged or not)."""
    books = await stack.mpesa_books()
    return sum(1 for r in books["stk"]["transactions"] if r["phone"] == phone)


async def test_initiate_deposit_sends_the_push_its_intent_committed_with_the_deposit(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    woken: list[TransactionId] = []
    advance = stack.saga.advance

    async def counted(tx_id: TransactionId, **kwargs: Any) -> Any:
        woken.append(tx_id)
        return await advance(tx_id, **kwargs)

    monkeypatch.setattr(stack.saga, "advance", counted)  # what the saga consumer's wake-ups reach
    user = await stack.user(phone=PAYS)

    tx = await stack.deposit(user, 1_300)  # returned once the push's answer is recorded

    assert tx.status is S.PENDING  # the answer is the deposit as committed
    pushed = await stack.get(tx.id)
    assert pushed.status is S.AWAITING_MPESA
    assert pushed.mpesa_request is not None and pushed.mpesa_request.checkout_request_id
    assert await stack.attempts(tx.id, Step.STK_PUSH) == 1
    [payload] = [p for p in await stack.events("DepositInitiated") if str(tx.id) in p]
    assert json.loads(payload)["pushed_by_initiator"] is True

    await stack.pump()  # DepositInitiated (and the push's answer): no saga worker reads for them
    assert tx.id not in woken
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await pushes_to(stack, PAYS) == 1
    assert await stack.deriv_transfers(str(tx.id)) == 1


async def test_a_push_held_back_by_m_pesa_fails_the_deposit_at_once(stack: Stack) -> None:
    user = await stack.user(phone=PAYS)
    await stack.mpesa_fault(kind="spike_arrest", api="stk")

    tx = await stack.deposit(user, 1_300)

    failed = await stack.get(tx.id)
    assert failed.status is S.FAILED
    assert "M-Pesa is unavailable" in (failed.failure_reason or "")
    await stack.pump()
    assert (await stack.get(tx.id)).status is S.FAILED
    assert await pushes_to(stack, PAYS) == 0


async def test_a_push_sent_whose_answer_died_with_its_process_is_found_not_sent_again(stack: Stack) -> None:
    """Killed after Daraja accepted the push, before its answer was stored: the customer pays, the
    callback is parked for want of the CheckoutRequestID, and the saga finds the payment in M-Pesa's
    own records after the call grace (lost_push), as for any lost answer. One push, one charge."""
    deposits = stack.initiating_with(stopping_at(stack, "deposit.stk_push.after_call"))
    user = await stack.user(phone=PAYS)

    tx = await stack.deposit(user, 1_300, by=deposits)

    assert (await stack.get(tx.id)).mpesa_request is None  # the answer died with it
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await pushes_to(stack, PAYS) == 1
    assert await stack.attempts(tx.id, Step.STK_PUSH) == 1  # the saga never sent one of its own
    assert await stack.deriv_transfers(str(tx.id)) == 1


async def test_a_push_whose_process_died_before_sending_it_is_never_sent_blindly(stack: Stack) -> None:
    """Killed between the commit and the call: nothing went out, but no other process can know that,
    so none sends it (the customer could be charged twice); M-Pesa's records show no payment and
    people decide, as after a saga worker's crash at the same point."""
    deposits = stack.initiating_with(stopping_at(stack, "deposit.stk_push.before_call"))
    user = await stack.user(phone=PAYS)

    tx = await stack.deposit(user, 1_300, by=deposits)

    done = await stack.settle(tx.id)
    assert done.status is S.NEEDS_REVIEW
    assert "did not give its CheckoutRequestID back" in (done.failure_reason or "")
    assert await pushes_to(stack, PAYS) == 0
    assert await stack.attempts(tx.id, Step.STK_PUSH) == 1


async def test_a_callback_that_beats_the_initiator_s_answer_wakes_the_saga_when_taken_in(
    slow_stack: Stack,
) -> None:
    stack = slow_stack
    port = AnswerAfterTheCallback(stack)
    deposits = stack.initiating_with(stopping_at(stack, "none", mpesa=port))
    user = await stack.user()

    tx = await stack.deposit(user, 1_300, by=deposits)  # its answer stored, the callback taken in

    done = await stack.settle(tx.id, timeout=10.0)  # by the adoption's own event (the timer: 60 s)
    assert done.status is S.COMPLETED, done.failure_reason
    assert done.mpesa_request is not None
    t = mpesa_callback_reviews
    async with stack.engine.connect() as connection:
        status = await connection.scalar(
            select(t.c.status).where(t.c.correlation_id == done.mpesa_request.checkout_request_id)
        )
    assert status == "ADOPTED"
    assert await stack.deriv_transfers(str(tx.id)) == 1

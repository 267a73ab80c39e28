"""The customer pays before the saga has stored the STK push's answer: the callback reaches the endpoint
first and is parked as unknown. The saga takes it in as soon as the answer is stored, so the deposit
does not wait for the STK-callback timer (MariaDB, Redis Streams, both simulators over sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text

from application.payments.decisions import Action
from application.payments.ports import StkPushAccepted
from application.payments.saga import SagaRunner
from domain.payments.status import TransactionStatus as S
from domain.shared.ids import TransactionId
from domain.wallet.money import Money
from persistence.tables import mpesa_callback_reviews, mpesa_requests
from tests.sagas.harness import PassThroughMpesa, Stack

# The saga's own push step (a deposit whose InitiateDeposit left the push to it); the initiator's
# push meeting an early callback: tests/sagas/test_initiator_push.py.
pytestmark = [pytest.mark.integration, pytest.mark.saga_pushes]

SETTLE_SECONDS = 10.0  # slow_stack's STK-callback wait is 60 s: only the callback settles in time


class AnswerAfterTheCallback(PassThroughMpesa):
    """The stack's own M-Pesa port, except that Daraja's answer to the push reaches the saga only once
    the callback for it has been parked: the race the e2e benchmark loses nearly every time, made certain."""

    def __init__(self, stack: Stack, *, adoption_fails: bool = False) -> None:
        super().__init__(stack)
        self._adoption_fails = adoption_fails

    async def stk_push(self, *, transaction_id: TransactionId, phone: str, amount: Money) -> StkPushAccepted:
        accepted = await self._inner.stk_push(transaction_id=transaction_id, phone=phone, amount=amount)
        async with asyncio.timeout(5):
            while not await self.parked(accepted.checkout_request_id):
                await asyncio.sleep(0.02)
        return accepted

    async def stk_answer_recorded(self, checkout_request_id: str, *, parked: bool = False) -> bool:
        if self._adoption_fails:
            raise ConnectionError("database away")
        return await self._inner.stk_answer_recorded(checkout_request_id, parked=parked)

    async def parked(self, checkout_request_id: str) -> list[Any]:
        return await reviews(self._stack, checkout_request_id)


class CallbackDuringTheAnswer(AnswerAfterTheCallback):
    """The callback parks while the saga's store of the push's answer waits for it: its database
    transaction holds the request key's gap (as the inbox's locking read does for an unknown id),
    the saga's insert of the request row waits on it, and only then is the callback parked and
    committed. The saga asks for parked callbacks in that same store, after the insert."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.raced = False
        self.parking: asyncio.Task[None] | None = None

    async def stk_push(self, *, transaction_id: TransactionId, phone: str, amount: Money) -> StkPushAccepted:
        accepted = await super().stk_push(transaction_id=transaction_id, phone=phone, amount=amount)
        checkout = accepted.checkout_request_id
        (row,) = await self.parked(checkout)
        t = mpesa_callback_reviews
        async with self._stack.engine.begin() as connection:  # taken back out, parked again below
            await connection.execute(delete(t).where(t.c.id == row.id))
        holder = await self._stack.engine.connect()
        await holder.begin()
        by_checkout = mpesa_requests.c.checkout_request_id == checkout
        await holder.execute(select(mpesa_requests.c.transaction_id).where(by_checkout).with_for_update())
        self.parking = asyncio.create_task(self._park_once_the_insert_waits(holder, dict(row._mapping)))
        return accepted

    async def _park_once_the_insert_waits(self, holder: Any, row: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(5):
                while not await self._insert_waits():
                    await asyncio.sleep(0.02)
            self.raced = True
        finally:
            await holder.execute(insert(mpesa_callback_reviews).values(row))
            await holder.commit()
            await holder.close()

    async def _insert_waits(self) -> bool:
        # The test's own connections (no PROCESS privilege needed): a statement that takes
        # microseconds, still running, is the insert waiting for the gap lock.
        query = text(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE DB = DATABASE() AND INFO LIKE 'INSERT INTO%mpesa_requests%'"
        )
        async with self._stack.engine.connect() as connection:
            return bool((await connection.execute(query)).scalar())


async def reviews(stack: Stack, checkout_request_id: str) -> list[Any]:
    t = mpesa_callback_reviews
    async with stack.engine.connect() as connection:
        rows = await connection.execute(select(t).where(t.c.correlation_id == checkout_request_id))
        return list(rows.all())


def racing_saga(stack: Stack, port: AnswerAfterTheCallback) -> SagaRunner:
    return SagaRunner(
        unit_of_work=stack.uow,
        mpesa=port,
        deriv_deposits=stack.saga._deriv_deposits,
        deriv_withdrawals=stack.saga._deriv_withdrawals,
        policy=stack.saga.policy,
    )


async def test_a_callback_that_beats_the_stored_answer_settles_the_deposit_without_the_timer(
    slow_stack: Stack,
) -> None:
    user = await slow_stack.user()
    tx = await slow_stack.deposit(user, 1_300)

    advanced = await racing_saga(slow_stack, AnswerAfterTheCallback(slow_stack)).advance(tx.id)
    done = await slow_stack.settle(tx.id, timeout=SETTLE_SECONDS)  # the timer alone would take 60 s

    # The same advance went on at once with the adopted evidence: no wake-up event needed.
    assert advanced.actions[:2] == (Action.SEND_STK_PUSH, Action.CONFIRM_STK)

    assert done.status is S.COMPLETED, done.failure_reason
    assert done.mpesa_request is not None and done.mpesa_request.mpesa_receipt_number
    assert await slow_stack.deriv_transfers(str(tx.id)) == 1
    (parked,) = await reviews(slow_stack, done.mpesa_request.checkout_request_id)
    assert (parked.reason, parked.status) == ("UNKNOWN_ID", "ADOPTED")
    assert parked.resolved_by == "penpay:adopted-early-callback" and parked.resolved_at is not None
    assert parked.transaction_id == tx.id.value


async def test_when_adoption_fails_the_timer_s_step_takes_the_callback_in(stack: Stack) -> None:
    """Taking the early callback in fails after the push's answer is stored (or a crash comes
    first): the deposit still settles by the STK-callback timer, whose step takes the parked
    callback in before asking STK Query, so it is judged as evidence, not left for a person."""
    user = await stack.user()
    tx = await stack.deposit(user, 1_300)

    advanced = await racing_saga(stack, AnswerAfterTheCallback(stack, adoption_fails=True)).advance(tx.id)

    assert advanced.status is S.PENDING and len(advanced.actions) == 1  # the step itself went through
    pushed = await stack.get(tx.id)
    assert pushed.status is S.AWAITING_MPESA and pushed.mpesa_request is not None
    done = await stack.settle(tx.id)  # FAST_POLICY: the STK-callback timer, then STK Query
    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.deriv_transfers(str(tx.id)) == 1
    assert done.mpesa_request is not None and done.mpesa_request.mpesa_receipt_number  # the callback's
    (parked,) = await reviews(stack, pushed.mpesa_request.checkout_request_id)
    assert parked.status == "ADOPTED"


async def test_a_callback_parked_while_the_answer_waits_for_it_is_adopted_in_that_store(
    slow_stack: Stack,
) -> None:
    user = await slow_stack.user()
    tx = await slow_stack.deposit(user, 1_300)
    port = CallbackDuringTheAnswer(slow_stack)

    advanced = await racing_saga(slow_stack, port).advance(tx.id)
    assert port.parking is not None
    await port.parking
    done = await slow_stack.settle(tx.id, timeout=SETTLE_SECONDS)  # the timer alone would take 60 s

    assert port.raced  # the request row's insert did wait for the parking callback
    assert advanced.actions[:2] == (Action.SEND_STK_PUSH, Action.CONFIRM_STK)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await slow_stack.deriv_transfers(str(tx.id)) == 1
    assert done.mpesa_request is not None
    (parked,) = await reviews(slow_stack, done.mpesa_request.checkout_request_id)
    assert (parked.reason, parked.status) == ("UNKNOWN_ID", "ADOPTED")

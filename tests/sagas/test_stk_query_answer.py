"""The STK Query's answer is recorded with the step it decides, on the deposit as read for the query.

The saga does not read the deposit again, locked, to record a final answer and credit it: it resumes
the state it read for the query, and the save's version check stands in for the lock. A change that
lands during the query (here: the deposit moved to OUTCOME_UNKNOWN, as a person or the call grace
would) makes that save fail; nothing of it is committed, and the answer is judged again on the state
read under the lock: credited once, never lost.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from application.payments.decisions import Action
from application.payments.ports import Verdict
from application.payments.saga import SagaRunner
from domain.payments.status import TransactionStatus as S
from domain.payments.stk_evidence import StkQueryAnswer
from domain.payments.transaction import Transaction
from persistence.tables import domain_events
from tests.sagas.harness import PassThroughMpesa, Stack

pytestmark = pytest.mark.integration

NO_CALLBACK = "254700031234"  # the simulator's lab range F=3: the STK callback is never delivered


class MovedDuringTheQuery(PassThroughMpesa):
    """The stack's M-Pesa port; while its STK Query is answered, the deposit is moved elsewhere."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.moved = 0

    async def query_stk(self, deposit: Transaction) -> StkQueryAnswer | Verdict:
        asked = await self._inner.query_stk(deposit)
        if isinstance(asked, StkQueryAnswer) and not self.moved:
            async with self._stack.uow() as uow:
                tx = await uow.transactions.get_for_update(deposit.id)
                assert tx is not None and tx.version == deposit.version
                tx.mark_outcome_unknown("moved during the STK Query (test)")
                await uow.transactions.save(tx)
                await uow.commit()
            self.moved += 1
        return asked


@pytest.mark.saga_pushes
async def test_an_answer_whose_deposit_moved_during_the_query_is_judged_again_and_credited_once(
    stack: Stack,
) -> None:
    port = MovedDuringTheQuery(stack)
    saga = SagaRunner(
        unit_of_work=stack.uow,
        mpesa=port,
        deriv_deposits=stack.saga._deriv_deposits,
        deriv_withdrawals=stack.saga._deriv_withdrawals,
        policy=stack.saga.policy,
    )
    user = await stack.user(phone=NO_CALLBACK)
    tx = await stack.deposit(user, 1_300)

    first = await saga.advance(tx.id)
    assert first.actions == (Action.SEND_STK_PUSH,)
    async with asyncio.timeout(15):  # FAST_POLICY: no callback, so the STK Query after its wait
        while Action.CONFIRM_STK not in (advanced := await saga.advance(tx.id)).actions:
            await asyncio.sleep(0.2)

    assert port.moved == 1
    assert Action.CREDIT_DEPOSIT in advanced.actions
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert done.mpesa_request is not None and done.mpesa_request.status == "CONFIRMED"
    assert await stack.deriv_transfers(str(tx.id)) == 1
    async with stack.engine.connect() as connection:
        moves = (
            await connection.execute(
                select(domain_events.c.payload)
                .where(domain_events.c.aggregate_id == str(tx.id))
                .where(domain_events.c.event_type == "TransactionStatusChanged")
                .order_by(domain_events.c.aggregate_version)
            )
        ).scalars()
        statuses = [str(payload) for payload in moves]
    # confirmed from OUTCOME_UNKNOWN, the state the answer was judged on the second time
    assert any('"OUTCOME_UNKNOWN"' in s and '"MPESA_CONFIRMED"' in s for s in statuses), statuses

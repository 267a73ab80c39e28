"""The database goes away at the worst moment of a deposit: the STK push has been accepted and
its CheckoutRequestID, known only to the process that sent it (the InitiateDeposit that created
the deposit), is not stored yet. (Found by the chaos soak: a
MariaDB restart there left the charge unmatched and the deposit in review.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.engine import make_url

from application.payments.saga import SagaRunner
from domain.payments.status import TransactionStatus as S
from persistence.engine import create_engine
from persistence.unit_of_work import SqlUnitOfWork
from proving.chaos.tcpcut import TcpCut
from tests.sagas.harness import FAST_POLICY, Stack

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 2.0


@pytest.fixture
async def cut(stack: Stack) -> AsyncIterator[TcpCut]:
    url = make_url(stack.database_url)
    proxy = TcpCut(url.host or "127.0.0.1", url.port or 3306)
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_an_accepted_stk_push_is_recorded_once_the_database_is_back(stack: Stack, cut: TcpCut) -> None:
    through_cut = make_url(stack.database_url).set(host="127.0.0.1", port=cut.port)
    engine = create_engine(through_cut.render_as_string(hide_password=False), pool_size=2)

    def checkpoint(name: str) -> None:
        if name == "deposit.stk_push.after_call":  # Daraja answered; nothing stored yet
            cut.cut(OUTAGE_SECONDS)

    saga = SagaRunner(
        unit_of_work=lambda: SqlUnitOfWork(engine),
        mpesa=stack.saga._mpesa,
        deriv_deposits=stack.saga._deriv_deposits,
        deriv_withdrawals=stack.saga._deriv_withdrawals,
        policy=FAST_POLICY,
        checkpoint=checkpoint,
    )
    deposits = stack.initiating_with(saga)
    try:
        user = await stack.user(phone="254712345678")
        tx = await stack.deposit(user, 1_300, by=deposits)  # cut while it holds the push's answer

        pushed = await stack.get(tx.id)
        assert cut.cuts == 1
        # COMPLETED: its callback came during the outage, was parked, and was adopted once stored.
        assert pushed.status in (S.AWAITING_MPESA, S.COMPLETED)
        assert pushed.mpesa_request is not None and pushed.mpesa_request.checkout_request_id
        done = await stack.settle(tx.id)
        assert done.status is S.COMPLETED, done.failure_reason
        assert await stack.deriv_transfers(str(tx.id)) == 1
    finally:
        await engine.dispose()

"""The deposit saga end to end: MariaDB, Redis Streams, both simulators over real sockets."""

from __future__ import annotations

import pytest

from domain.payments.status import TransactionStatus as S
from tests.sagas.harness import CLIENT_LOGINID, Stack

pytestmark = pytest.mark.integration


async def test_a_paid_deposit_credits_the_deriv_account_once(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.deposit(user, 1_300)  # KES 1,300 at 130 KES/USD = USD 10.00

    done = await stack.settle(tx.id)

    assert done.status is S.COMPLETED, done.failure_reason
    assert done.converted_amount is not None and done.converted_amount.amount_minor == 10_00
    assert done.deriv_transfer is not None and done.deriv_transfer.deriv_transaction_id
    assert done.mpesa_request is not None and done.mpesa_request.mpesa_receipt_number
    assert await stack.deriv_transfers(str(tx.id)) == 1
    assert done.deriv_loginid.value == CLIENT_LOGINID


async def test_a_cancelled_stk_push_fails_without_moving_money(stack: Stack) -> None:
    user = await stack.user(phone="254712341032")  # the simulator's "cancelled by user"

    tx = await stack.deposit(user, 500)
    done = await stack.settle(tx.id)

    assert done.status is S.FAILED
    assert "1032" in (done.failure_reason or "")
    assert await stack.deriv_transfers(str(tx.id)) == 0

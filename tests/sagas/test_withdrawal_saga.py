"""The withdrawal saga end to end: MariaDB, Redis Streams, both simulators over real sockets."""

from __future__ import annotations

import pytest

from application.payments.errors import VerificationCodeRejected
from domain.payments.status import TransactionStatus as S
from tests.sagas.harness import Stack

pytestmark = pytest.mark.integration


async def test_a_confirmed_withdrawal_pays_kes_by_b2c_once(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)  # USD 10.00 at 128 KES/USD = KES 1,280
    assert tx.status is S.AWAITING_WITHDRAWAL_CODE
    assert tx.converted_amount is not None and tx.converted_amount.amount_minor == 1_280_00

    confirmed = await stack.app.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=await stack.withdrawal_code()
    )
    assert confirmed.status is S.DERIV_WITHDRAWAL_DONE
    done = await stack.settle(tx.id)

    assert done.status is S.COMPLETED, done.failure_reason
    assert done.mpesa_disbursement is not None and done.mpesa_disbursement.transaction_receipt
    assert done.deriv_withdrawal is not None and done.deriv_withdrawal.deriv_transaction_id
    assert await stack.deriv_transfers(str(tx.id)) == 1  # the paymentagent_withdraw


async def test_a_wrong_code_fails_the_withdrawal_and_moves_nothing(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 5_00)

    with pytest.raises(VerificationCodeRejected):
        await stack.app.confirm_withdrawal(user_id=user, transaction_id=tx.id, verification_code="WRONG123")

    assert (await stack.get(tx.id)).status is S.FAILED
    assert await stack.deriv_transfers(str(tx.id)) == 0


async def test_a_failed_b2c_sends_the_usd_back_to_deriv_and_reverses(stack: Stack) -> None:
    user = await stack.user(phone="254712342040")  # B2C 2040: unregistered customer
    tx = await stack.withdrawal(user, 12_50)
    await stack.app.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=await stack.withdrawal_code()
    )

    done = await stack.settle(tx.id)

    assert done.status is S.REVERSED, done.failure_reason
    assert await stack.deriv_transfers(f"{tx.id}-refund") == 1

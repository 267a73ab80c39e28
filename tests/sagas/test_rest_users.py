"""The sagas choose Deriv's transport per user: a new-API (REST) user's deposit and withdrawal go
through the gateway's REST transport (by nickname, with the user's OAuth token), a v3 user's as
before, in one run over one set of books that the consistency checker reads."""

from __future__ import annotations

import pytest

from domain.payments.status import TransactionStatus as S
from tests.sagas.harness import CLIENT_LOGINID, Stack

pytestmark = pytest.mark.integration
TRANSFER = "/payment-agents/v1/transfer"
WITHDRAW = "/payment-agents/v1/withdraw"
CODE = "/payment-agents/v1/withdraw/verification_code"


async def test_deposits_of_a_rest_user_and_a_v3_user_each_take_their_transport(stack: Stack) -> None:
    rest_user = await stack.rest_user()
    v3_user = await stack.user(phone="254712345670", loginid="CR90000002")
    rest_tx = await stack.deposit(rest_user, 2_600)
    v3_tx = await stack.deposit(v3_user, 2_600)
    assert str(rest_tx.deriv_login_id) == "@alice_w"

    rest_done, v3_done = await stack.settle(rest_tx.id), await stack.settle(v3_tx.id)

    assert rest_done.status is S.COMPLETED, rest_done.failure_reason
    assert v3_done.status is S.COMPLETED, v3_done.failure_reason
    assert stack.rest_posts(TRANSFER, str(rest_tx.id)) == 1
    assert stack.rest_posts(TRANSFER, str(v3_tx.id)) == 0  # v3 users are unchanged
    assert await stack.deriv_transfers(str(rest_tx.id)) == 1
    assert await stack.deriv_transfers(str(v3_tx.id)) == 1
    assert rest_done.deriv_transfer is not None and rest_done.deriv_transfer.deriv_transaction_id


async def test_a_rest_transfer_whose_answer_is_lost_after_executing_settles_once(stack: Stack) -> None:
    user = await stack.rest_user()
    await stack.rest_fault(kind="drop_after", endpoint="transfer", times=1)
    tx = await stack.deposit(user, 2_600)
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.deriv_transfers(str(tx.id)) == 1
    assert stack.rest_posts(TRANSFER, str(tx.id)) == 1  # resolved by request_id, never sent again


async def test_a_rest_users_withdrawal_uses_their_token_and_the_six_digit_code(stack: Stack) -> None:
    user = await stack.rest_user()
    tx = await stack.withdrawal(user, 10_00)
    assert tx.status is S.AWAITING_WITHDRAWAL_CODE
    assert stack.rest_posts(CODE) == 1

    code = await stack.withdrawal_code(CLIENT_LOGINID)  # alice_w is CR90000001 in the books
    assert len(code) == 6 and code.isdigit()
    confirmed = await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=code
    )
    assert confirmed.status is S.MPESA_DISBURSEMENT_SENT, confirmed.failure_reason
    done = await stack.settle(tx.id)

    assert done.status is S.COMPLETED, done.failure_reason
    assert stack.rest_posts(WITHDRAW, str(tx.id)) == 1
    assert await stack.deriv_transfers(str(tx.id)) == 1


async def test_a_rest_withdrawal_lost_in_flight_is_resolved_on_the_agents_side(stack: Stack) -> None:
    user = await stack.rest_user()
    tx = await stack.withdrawal(user, 10_00)
    await stack.rest_fault(kind="drop_after", endpoint="withdraw", times=1)
    code = await stack.withdrawal_code(CLIENT_LOGINID)
    await stack.withdrawals.confirm_withdrawal(user_id=user, transaction_id=tx.id, verification_code=code)
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert stack.rest_posts(WITHDRAW, str(tx.id)) == 1
    assert await stack.deriv_transfers(str(tx.id)) == 1

"""The withdrawal saga end to end: MariaDB, Redis Streams, both simulators over real sockets."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from application.payments.decisions import Step
from application.payments.errors import DerivBusy, VerificationCodeRejected
from application.payments.floats import fund_float
from application.payments.rates import FixedRates
from domain.payments.attachments import EvidenceStatus
from domain.payments.idempotency import IdempotencyKey
from domain.payments.status import TransactionStatus as S
from domain.payments.transaction import Transaction
from domain.shared.ids import TransactionId, UserId
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency, Money
from tests.sagas.harness import MPESA_FLOAT_KES, Stack, _key

pytestmark = pytest.mark.integration


async def test_a_confirmed_withdrawal_pays_kes_by_b2c_once(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)  # USD 10.00 at 128 KES/USD = KES 1,280
    assert tx.status is S.AWAITING_WITHDRAWAL_CODE
    assert tx.converted_amount is not None and tx.converted_amount.amount_minor == 1_280_00

    confirmed = await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=await stack.withdrawal_code()
    )
    assert confirmed.status is S.MPESA_DISBURSEMENT_SENT  # debited, converted, payout reserved
    done = await stack.settle(tx.id)

    assert done.status is S.COMPLETED, done.failure_reason
    assert done.mpesa_disbursement is not None and done.mpesa_disbursement.transaction_receipt
    assert done.deriv_withdrawal is not None and done.deriv_withdrawal.deriv_transaction_id
    assert await stack.deriv_transfers(str(tx.id)) == 1  # the paymentagent_withdraw


async def test_the_debit_the_reservation_and_the_b2c_intent_commit_together_then_b2c_goes_once(
    stack: Stack,
) -> None:
    """ConfirmWithdrawal books the debit, the conversion and the M-Pesa float's reservation in one
    commit (MPESA_DISBURSEMENT_SENT, its evidence SENT) with the B2C's attempt, and sends the B2C
    itself once that commit is done: the saga's wake-up finds it in flight and sends nothing."""
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)

    confirmed = await confirm(stack, user, tx.id)

    assert confirmed.status is S.MPESA_DISBURSEMENT_SENT
    assert confirmed.mpesa_disbursement is not None
    assert confirmed.mpesa_disbursement.status is EvidenceStatus.SENT
    async with stack.uow() as uow:
        mpesa_float = await uow.ledger.get_or_create_account(
            kind=AccountKind.MPESA_FLOAT, currency=Currency.KES
        )
    assert mpesa_float.balance == MPESA_FLOAT_KES - Money(1_280_00, Currency.KES)  # reserved

    await stack.saga.drain()  # the B2C sent by ConfirmWithdrawal has its answer recorded
    accepted = await stack.get(tx.id)
    assert accepted.mpesa_disbursement is not None and accepted.mpesa_disbursement.conversation_id
    await stack.pump()  # the debit's wake-up: nothing more to send
    async with stack.uow() as uow:
        assert (await uow.saga_steps.get(tx.id))["b2c"].attempts == 1
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.payouts_to(tx.phone.value) == 1
    async with stack.uow() as uow:
        assert (await uow.saga_steps.get(tx.id))["b2c"].attempts == 1


@pytest.mark.saga_payouts
async def test_a_debit_recorded_alone_wakes_the_saga_which_reserves_and_pays_at_its_first_look(
    stack: Stack,
) -> None:
    """A debit recorded alone (an orchestrator that leaves the payout to the saga): its status change
    wakes the saga, whose first look reserves the float and sends the B2C, once."""
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)

    confirmed = await confirm(stack, user, tx.id)

    assert confirmed.status is S.DERIV_WITHDRAWAL_DONE
    assert confirmed.mpesa_disbursement is None
    await stack.pump()  # the debit's wake-up: the saga reserves and sends at once
    async with stack.uow() as uow:
        assert (await uow.saga_steps.get(tx.id))["b2c"].attempts == 1
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.payouts_to(tx.phone.value) == 1


async def test_a_payout_held_back_by_spike_arrest_waits_and_pays_once_without_using_its_attempts(
    stack: Stack,
) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)
    arrests = stack.saga.policy.max_attempts + 2  # more than a lost answer is allowed
    async with stack.http.post(
        f"{stack.mpesa_sim.base_url}/__control__/faults",
        json={"kind": "spike_arrest", "api": "b2c", "count": arrests},
    ) as response:
        assert response.status in (200, 201), await response.text()
    await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=await stack.withdrawal_code()
    )

    done = await stack.settle(tx.id, timeout=30)

    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.payouts_to(tx.phone.value) == 1
    async with stack.uow() as uow:
        assert (await uow.saga_steps.get(tx.id))["b2c"].attempts == 1


async def test_a_wrong_code_fails_the_withdrawal_and_moves_nothing(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)

    with pytest.raises(VerificationCodeRejected):
        await stack.withdrawals.confirm_withdrawal(
            user_id=user, transaction_id=tx.id, verification_code="WRONG123"
        )

    assert (await stack.get(tx.id)).status is S.FAILED
    assert await stack.deriv_transfers(str(tx.id)) == 0


async def test_a_failed_b2c_sends_the_usd_back_to_deriv_and_reverses(stack: Stack) -> None:
    user = await stack.user(phone="254712342040")  # B2C 2040: unregistered customer
    tx = await stack.withdrawal(user, 12_50)
    await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=await stack.withdrawal_code()
    )

    done = await stack.settle(tx.id)

    assert done.status is S.REVERSED, done.failure_reason
    assert await stack.deriv_transfers(f"{tx.id}-refund") == 1


async def confirm(stack: Stack, user: UserId, tx_id: TransactionId) -> Transaction:
    return await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=tx_id, verification_code=await stack.withdrawal_code()
    )


async def test_a_b2c_queue_timeout_is_settled_by_transaction_status_not_paid_again(stack: Stack) -> None:
    user = await stack.user(phone="254700061234")  # F=6: the money moves, only QueueTimeOutURL is called
    tx = await stack.withdrawal(user, 10_00)
    await confirm(stack, user, tx.id)

    done = await stack.settle(tx.id, timeout=30)

    assert done.status is S.COMPLETED, done.failure_reason
    books = await stack.mpesa_books()
    payouts = [r for r in books["b2c"]["transactions"] if r["phone"] == "254700061234" and r["paid"]]
    assert len(payouts) == 1


async def test_the_b2c_result_arms_transaction_status_and_the_worker_asks_it_writing_nothing(
    patient_stack: Stack,
) -> None:
    """The B2C result's commit starts the Transaction Status step with no attempt counted; the worker
    its event wakes asks the query without a commit of its own, and the status answer completes the
    withdrawal. A counted query (a commit of the worker's) would leave an attempt; and with a minute
    between queries none could have been asked after it."""
    stack = patient_stack
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)
    await confirm(stack, user, tx.id)

    done = await stack.settle(tx.id)

    assert done.status is S.COMPLETED, done.failure_reason
    query = await stack.step_record(tx.id, Step.B2C_QUERY)
    assert query is not None and query.attempts == 0 and query.retry_at is not None  # armed only
    assert query.detail is not None and query.detail.startswith("armed by the B2C answer")
    assert await stack.payouts_to(tx.phone.value) == 1


async def test_an_armed_query_left_unanswered_is_asked_again_and_counted(stack: Stack) -> None:
    """The armed query's answer never comes: one query interval after the arming the saga's counted
    rule asks again (the sweepers leave it to the woken worker until then), and that answer completes."""
    await stack.mpesa_fault(kind="drop", api="status", count=1)
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)
    await confirm(stack, user, tx.id)

    done = await stack.settle(tx.id)

    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.attempts(tx.id, Step.B2C_QUERY) >= 1
    assert await stack.payouts_to(tx.phone.value) == 1


async def test_a_debit_whose_answer_is_lost_is_resolved_without_the_code(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)
    await stack.deriv_fault(kind="drop_after", call="paymentagent_withdraw", times=1)

    after_confirm = await confirm(stack, user, tx.id)
    # The gateway may resolve it through the statement within the call; otherwise the sweeper does.
    assert after_confirm.status in (
        S.AWAITING_WITHDRAWAL_CODE,
        S.OUTCOME_UNKNOWN,
        S.MPESA_DISBURSEMENT_SENT,
    )

    done = await stack.settle(tx.id, timeout=30)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.deriv_transfers(str(tx.id)) == 1


async def test_a_lost_debit_whose_statement_lookups_are_rate_limited_waits_instead_of_going_to_review(
    stack: Stack,
) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)
    await stack.deriv_fault(kind="drop_after", call="paymentagent_withdraw", times=1)
    # every lookup of the lost debit is refused, more often than a lookup is allowed to fail
    await stack.deriv_fault(kind="rate_limit", call="statement", times=stack.saga.policy.max_attempts + 3)

    await confirm(stack, user, tx.id)
    done = await stack.settle(tx.id, timeout=30)

    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.deriv_transfers(str(tx.id)) == 1


async def test_a_payout_waits_for_the_mpesa_float(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)
    # Emptied after the withdrawal was taken (initiation refuses one the float cannot cover then).
    async with stack.uow() as uow:
        await fund_float(uow, AccountKind.MPESA_FLOAT, -MPESA_FLOAT_KES, "withdrawn by the operator")
        await uow.commit()
    await confirm(stack, user, tx.id)
    for _ in range(3):
        await stack.pump()
        await stack.sweeper.sweep_once()
    assert (await stack.get(tx.id)).status is S.DERIV_WITHDRAWAL_DONE
    assert await stack.events("FloatLow")

    await stack.fund_floats(usd=Money(0, Currency.USD))
    assert (await stack.settle(tx.id)).status is S.COMPLETED


async def test_a_debit_recorded_but_never_sent_is_proven_absent_and_fails_cleanly(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)
    async with stack.uow() as uow:  # ConfirmWithdrawal died after recording its intent, before the call
        locked = await uow.transactions.get_for_update(tx.id)
        assert locked is not None
        locked.deriv_withdrawal_requested()
        await uow.transactions.save(locked)
        await uow.commit()

    done = await stack.settle(tx.id, timeout=30)

    assert done.status is S.FAILED, done.failure_reason
    assert "did not happen" in (done.failure_reason or "")
    assert await stack.deriv_transfers(str(tx.id)) == 0


async def test_a_debit_deriv_held_back_unsent_is_confirmed_again_with_the_same_code(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)
    code = await stack.withdrawal_code()
    await stack.deriv_fault(kind="rate_limit", call="paymentagent_withdraw", times=1)

    with pytest.raises(DerivBusy) as busy:
        await stack.withdrawals.confirm_withdrawal(user_id=user, transaction_id=tx.id, verification_code=code)

    assert busy.value.retry_after_seconds >= 1
    held = await stack.get(tx.id)
    assert held.status is S.AWAITING_WITHDRAWAL_CODE  # still waiting for the (unused) code
    assert not held.deriv_withdrawal_may_have_gone()
    assert await stack.deriv_transfers(str(tx.id)) == 0
    for _ in range(3):  # the sweeper neither fails it nor looks it up while the code is valid
        await stack.pump()
        await stack.sweeper.sweep_once()
    assert (await stack.get(tx.id)).status is S.AWAITING_WITHDRAWAL_CODE

    again = await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=tx.id, verification_code=code
    )

    assert again.status is S.MPESA_DISBURSEMENT_SENT
    assert (await stack.settle(tx.id)).status is S.COMPLETED
    assert await stack.deriv_transfers(str(tx.id)) == 1


async def test_the_same_withdrawal_request_again_asks_for_the_code_deriv_held_back(stack: Stack) -> None:
    """The code request moves no money: held back, it leaves nothing stored (as a refused deposit),
    and the same request again asks again and stores its withdrawal under the key."""
    user = await stack.user()
    await stack.deriv_fault(kind="rate_limit", call="verify_email", times=1)

    with pytest.raises(DerivBusy):
        await stack.withdrawal(user, 10_00, key="same-key")
    async with stack.uow() as uow:
        held = await uow.transactions.find_by_idempotency_key(user, _key(user, "same-key", "withdrawal"))
    assert held is None

    again = await stack.withdrawal(user, 10_00, key="same-key")

    assert again.status is S.AWAITING_WITHDRAWAL_CODE
    async with stack.uow() as uow:
        stored = await uow.transactions.find_by_idempotency_key(user, _key(user, "same-key", "withdrawal"))
    assert stored is not None and stored.id == again.id
    await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=again.id, verification_code=await stack.withdrawal_code()
    )
    assert (await stack.settle(again.id)).status is S.COMPLETED


async def test_a_withdrawal_stored_pending_before_its_code_was_asked_for_asks_again(stack: Stack) -> None:
    """A PENDING withdrawal an earlier version stored before asking Deriv for the code (and never got
    it sent): the same request again asks for the code and takes that withdrawal on."""
    user = await stack.user()
    key_hash = _key(user, "old-key", "withdrawal")
    async with stack.uow() as uow:
        now = uow.clock.now()
        known = await uow.users.get(user)
        assert known is not None and known.deriv_login_id is not None
        pending = Transaction.start_withdrawal(
            user_id=user,
            amount=Money(10_00, Currency.USD),
            idempotency_key=IdempotencyKey(key_hash, str(user), "withdrawal"),
            locked_rate=FixedRates().lock(base=Currency.USD, quote=Currency.KES, now=now),
            phone=known.phone,
            deriv_login_id=known.deriv_login_id,
            now=now,
        )
        await uow.transactions.add(pending)
        await uow.commit()

    again = await stack.withdrawal(user, 10_00, key="old-key")

    assert again.id == pending.id
    assert again.status is S.AWAITING_WITHDRAWAL_CODE


async def test_a_payout_m_pesa_never_got_is_sent_again_with_its_id_when_transaction_status_finds_nothing(
    stack: Stack,
) -> None:
    user = await stack.user()
    tx = await stack.withdrawal(user, 10_00)
    # The B2C's answer is an error M-Pesa gives before it carries anything out: the outcome is
    # unknown to PenPay (no ConversationID), and Transaction Status never finds the payout.
    async with stack.http.post(
        f"{stack.mpesa_sim.base_url}/__control__/faults",
        json={"kind": "internal_error", "api": "b2c", "count": 1},
    ) as response:
        assert response.status in (200, 201), await response.text()
    # A grace for a send in flight longer than Transaction Status takes to run out of attempts (as
    # in the soak's settings): the send again after that grace never came before the queries ran out.
    policy, stack.saga.policy = stack.saga.policy, replace(stack.saga.policy, call_grace=timedelta(minutes=5))
    try:
        await confirm(stack, user, tx.id)
        done = await stack.settle(tx.id, timeout=60)
    finally:
        stack.saga.policy = policy

    # sent again under the same OriginatorConversationID once the queries ran out: paid once, no
    # person needed (it went to review, unpaid, and a person's RETRY ran the queries out again)
    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.payouts_to(tx.phone.value) == 1
    async with stack.uow() as uow:
        steps = await uow.saga_steps.get(tx.id)
    assert steps["b2c"].attempts == 2
    await stack.assert_consistent()

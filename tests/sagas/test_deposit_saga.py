"""The deposit saga end to end: MariaDB, Redis Streams, both simulators over real sockets."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from structlog.testing import capture_logs

from application.payments.decisions import Action
from application.payments.floats import fund_float
from domain.payments.status import TransactionStatus as S
from domain.shared.clock import FixedClock
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency, Money
from persistence.engine import create_engine
from persistence.saga_queries import stale_transaction_ids
from persistence.tables import transactions
from persistence.unit_of_work import SqlUnitOfWork
from tests.sagas.harness import AGENT_FLOAT_USD, CLIENT_LOGINID, Stack
from workers.sagas import Sweeper, report_in_flight

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
    assert done.deriv_login_id.value == CLIENT_LOGINID
    async with stack.uow() as uow:
        steps = await uow.saga_steps.get(tx.id)
    # the callback was cross-checked by an STK Query (CONFIRMED), which wrote no intent row: it
    # moves no money, and an answer that settles the payment needs no attempt counted
    assert done.mpesa_request.status == "CONFIRMED"
    assert "stk_query" not in steps
    assert steps["stk_push"].attempts == 1 and steps["deriv_transfer"].attempts == 1


async def test_a_cancelled_stk_push_fails_without_moving_money(stack: Stack) -> None:
    user = await stack.user(phone="254712341032")  # the simulator's "cancelled by user"

    tx = await stack.deposit(user, 1_300)
    done = await stack.settle(tx.id)

    assert done.status is S.FAILED
    assert "1032" in (done.failure_reason or "")
    assert await stack.deriv_transfers(str(tx.id)) == 0


async def test_a_lost_stk_callback_is_settled_by_stk_query(stack: Stack) -> None:
    user = await stack.user(phone="254700031234")  # lab range F=3: the callback is never delivered

    tx = await stack.deposit(user, 1_300)
    done = await stack.settle(tx.id)

    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.deriv_transfers(str(tx.id)) == 1


async def test_a_duplicated_callback_credits_once(stack: Stack) -> None:
    user = await stack.user(phone="254700011234")  # F=1: every callback arrives twice

    tx = await stack.deposit(user, 2_600)
    done = await stack.settle(tx.id)
    for _ in range(5):  # let the duplicate land and be handled
        await stack.pump()

    assert done.status is S.COMPLETED
    assert await stack.deriv_transfers(str(tx.id)) == 1
    assert len(await stack.events("DerivTransferCompleted")) == 1


async def test_a_transfer_whose_answer_is_lost_is_resolved_not_resent(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.deposit(user, 1_300)
    await stack.deriv_fault(
        kind="drop_after", call="paymentagent_transfer", match={"description": str(tx.id)}, times=1
    )

    done = await stack.settle(tx.id, timeout=30)

    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.deriv_transfers(str(tx.id)) == 1


async def test_a_rate_limited_transfer_waits_out_the_limit_without_using_up_its_attempts(
    stack: Stack,
) -> None:
    user = await stack.user()
    tx = await stack.deposit(user, 1_300)
    refusals = stack.saga.policy.max_attempts + 2  # more than the attempts a lost answer gets
    await stack.deriv_fault(
        kind="rate_limit", call="paymentagent_transfer", match={"description": str(tx.id)}, times=refusals
    )

    done = await stack.settle(tx.id, timeout=30)

    assert done.status is S.COMPLETED, done.failure_reason
    assert await stack.deriv_transfers(str(tx.id)) == 1
    async with stack.uow() as uow:
        step = (await uow.saga_steps.get(tx.id))["deriv_transfer"]
    assert step.attempts == 1  # the one that went through; the held-back calls gave theirs back
    assert step.retry_at is None


async def test_a_transfer_refused_for_good_keeps_the_usd_for_the_user_and_asks_for_review(
    stack: Stack,
) -> None:
    user = await stack.user(loginid="CR90000099")  # no such Deriv account: Deriv refuses the transfer
    tx = await stack.deposit(user, 1_300)

    done = await stack.settle(tx.id)

    assert done.status is S.NEEDS_REVIEW
    assert "Deriv refused the transfer" in (done.failure_reason or "")
    assert await stack.deriv_transfers(str(tx.id)) == 0
    assert await stack.wallet_balance(user, Currency.USD) == 10_00  # booked to the user, refundable


async def test_a_deposit_waits_for_the_agent_float_and_goes_on_once_it_is_funded(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.deposit(user, 1_300)
    # Emptied after the deposit was taken (initiation refuses one the float cannot cover then).
    async with stack.uow() as uow:
        await fund_float(uow, AccountKind.DERIV_AGENT_FLOAT, -AGENT_FLOAT_USD, "withdrawn by the operator")
        await uow.commit()

    waiting = await stack.settle(tx.id, until={S.MPESA_CONFIRMED}, timeout=10)
    for _ in range(3):
        await stack.sweeper.sweep_once()
    assert (await stack.get(tx.id)).status is S.MPESA_CONFIRMED
    assert waiting.deriv_transfer is None
    assert await stack.events("FloatLow")
    assert await stack.deriv_transfers(str(tx.id)) == 0

    await stack.fund_floats(kes=Money(0, Currency.KES))
    done = await stack.settle(tx.id)
    assert done.status is S.COMPLETED
    assert await stack.deriv_transfers(str(tx.id)) == 1


@pytest.mark.parametrize("leases", [True, False], ids=["within-a-lease", "written-last"])
async def test_a_float_another_process_emptied_fails_the_unlocked_credit_whole_and_the_deposit_waits(
    stack: Stack, leases: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from persistence import float_leases

    if not leases:  # no lease covers any credit: the float written last, on this process's guess
        monkeypatch.setattr(float_leases, "CAPS", {})
    user = await stack.user()
    first = await stack.deposit(user, 1_300)
    assert (await stack.settle(first.id)).status is S.COMPLETED  # this process knows the float now
    tx = await stack.deposit(user, 1_300)
    # Another process (its own engine, so its own knowledge) pays the rest of the float out.
    elsewhere = create_engine(stack.database_url)
    try:
        async with SqlUnitOfWork(elsewhere) as uow:
            left = AGENT_FLOAT_USD - Money(10_00, Currency.USD)
            await fund_float(uow, AccountKind.DERIV_AGENT_FLOAT, -left, "withdrawn by the operator")
            await uow.commit()
    finally:
        await elsewhere.dispose()

    with capture_logs() as logs:
        waiting = await stack.settle(tx.id, until={S.MPESA_CONFIRMED}, timeout=10)
    # Within a lease: the operator's withdrawal recalled it, so the credit finds it retired and holds
    # the float. Written last: booked without the float's lock on this process's word, refused at
    # the commit, booked again with the float held. Either way the credit alone, the transfer
    # waiting for a top-up.
    assert [e["event"] for e in logs].count("saga.float_floor_not_kept") == (0 if leases else 1)
    assert waiting.deriv_transfer is None
    assert await stack.events("FloatLow")
    assert await stack.deriv_transfers(str(tx.id)) == 0
    await stack.assert_consistent()


async def test_contradicting_mpesa_evidence_goes_to_review_through_outcome_unknown(stack: Stack) -> None:
    from sqlalchemy import update

    from persistence.tables import mpesa_requests

    user = await stack.user()
    tx = await stack.deposit(user, 1_300)
    pushed = await stack.settle(tx.id, until={S.AWAITING_MPESA})
    async with stack.engine.begin() as connection:  # the callback inbox found callback and query disagree
        await connection.execute(
            update(mpesa_requests)
            .where(mpesa_requests.c.transaction_id == pushed.id.value)
            .values(status="REVIEW")
        )

    done = await stack.settle(tx.id)

    assert done.status is S.NEEDS_REVIEW
    assert "contradicts" in (done.failure_reason or "")
    assert await stack.deriv_transfers(str(tx.id)) == 0


@pytest.mark.saga_pushes
async def test_the_sweeper_reaches_every_waiting_transaction_not_only_the_oldest_page(stack: Stack) -> None:
    user = await stack.user()
    for _ in range(3):  # the oldest: each waits up to an hour for its verification code
        waiting = await stack.withdrawal(user, 10_00)
        assert waiting.status is S.AWAITING_WITHDRAWAL_CODE
    deposit = await stack.deposit(user, 1_300)  # its wake-up event is never delivered: only a sweep sees it
    sweeper = Sweeper(stack.engine, stack.saga, min_age=timedelta(0), batch=2)

    for _ in range(2):
        await sweeper.sweep_once()

    assert (await stack.get(deposit.id)).status is S.AWAITING_MPESA  # its STK push went out
    await stack.settle(deposit.id)


@pytest.mark.saga_payouts  # the change that moves it is the debit alone: the B2C is the saga's
async def test_a_waiting_transaction_is_not_read_again_until_time_or_a_change_can_move_it(
    stack: Stack,
) -> None:
    user = await stack.user()
    waiting = await stack.withdrawal(user, 10_00)  # nothing moves it for an hour but its code
    sweeper = Sweeper(stack.engine, stack.saga, min_age=timedelta(0), max_quiet=timedelta(minutes=5))

    assert await sweeper.sweep_once() == 1
    assert await sweeper.sweep_once() == 0  # still waiting: not read again

    code = await stack.withdrawal_code()
    await stack.withdrawals.confirm_withdrawal(
        user_id=user, transaction_id=waiting.id, verification_code=code
    )
    assert await sweeper.sweep_once() == 1  # it changed: looked at again, and the B2C goes out
    assert (await stack.get(waiting.id)).status is S.MPESA_DISBURSEMENT_SENT
    await stack.settle(waiting.id)


async def test_a_deposit_left_waiting_is_passed_over_by_every_sweeper_until_time_can_move_it(
    stack: Stack,
) -> None:
    user = await stack.user(phone="254700031234")  # lab range F=3: the callback is never delivered
    tx = await stack.deposit(user, 1_300)
    await stack.pump()  # DepositInitiated: the STK push, its answer stored, left waiting for the callback
    pushed = await stack.get(tx.id)
    assert pushed.status is S.AWAITING_MPESA
    async with stack.engine.connect() as connection:
        due = (
            await connection.execute(
                select(transactions.c.saga_due_at).where(transactions.c.id == tx.id.value)
            )
        ).scalar_one()
    # the saga's word, saved with the answer: nothing before the STK callback's wait is over
    assert due == pushed.updated_at + stack.saga.policy.stk_callback_wait

    async def swept_at(now: datetime) -> bool:
        found, _ = await stale_transaction_ids(
            stack.engine, untouched_since=now, limit=10_000, now=now, quiet_since=now - timedelta(minutes=5)
        )
        return tx.id in {tx_id for tx_id, _ in found}

    assert not await swept_at(due - timedelta(milliseconds=1))  # no sweeper reads it to find it waiting
    assert await swept_at(due)  # then the STK Query is due: any sweeper takes it
    assert await swept_at(pushed.updated_at + timedelta(minutes=5, seconds=1))  # never quiet past max_quiet


@pytest.mark.saga_pushes
async def test_the_sweeper_leaves_a_transaction_another_worker_holds_to_it(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.deposit(user, 1_300)  # PENDING: its wake-up is not pumped
    async with stack.uow() as holder:  # another worker in the middle of a step
        assert await holder.transactions.get_for_update(tx.id) is not None
        advanced = await asyncio.wait_for(stack.saga.advance(tx.id, if_idle=True), 10)
        assert advanced.busy and advanced.actions == ()  # not waited for, nothing done
    assert (await stack.get(tx.id)).status is S.PENDING
    assert (await stack.settle(tx.id)).status is S.COMPLETED


@pytest.mark.saga_pushes
async def test_the_sweeper_leaves_what_may_still_be_queued_for_the_worker_s_consumer(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.deposit(user, 1_300)  # PENDING: its wake-up is not pumped (queued)
    created = (await stack.get(tx.id)).updated_at
    queued = timedelta(seconds=30)  # what an event waits now before the worker's consumer runs it

    def sweeper(delay: timedelta, *, age: timedelta = timedelta(seconds=10)) -> Sweeper:
        return Sweeper(
            stack.engine,
            stack.saga,
            min_age=timedelta(seconds=1),  # the deposit is older than that
            max_quiet=timedelta(seconds=60),
            clock=FixedClock(created + age),
            queue_delay=lambda: delay,
        )

    assert await sweeper(queued).sweep_once() == 0  # its event may still be on the way: left to it
    # a handler stuck for an hour keeps the sweeper off no longer than max_quiet
    assert await sweeper(timedelta(hours=1), age=timedelta(seconds=59)).sweep_once() == 0
    assert (await stack.get(tx.id)).status is S.PENDING
    assert await sweeper(timedelta(hours=1), age=timedelta(seconds=61)).sweep_once() == 1
    assert (await stack.get(tx.id)).status is not S.PENDING


@pytest.mark.saga_pushes
async def test_a_wake_up_for_a_transaction_being_advanced_joins_its_owner(stack: Stack) -> None:
    user = await stack.user()
    tx = await stack.deposit(user, 1_300)

    first, second = await asyncio.gather(stack.saga.advance(tx.id), stack.saga.advance(tx.id))

    assert second is first  # one advance moved it; the other waited for it (and its second look)
    assert first.actions[0] is Action.SEND_STK_PUSH
    assert (await stack.settle(tx.id)).status is S.COMPLETED


@pytest.mark.saga_pushes
async def test_the_sweeper_reports_how_much_money_is_in_flight_and_for_how_long(stack: Stack) -> None:
    user = await stack.user()
    first = await stack.withdrawal(user, 10_00)
    await stack.withdrawal(user, 20_00)
    await stack.deposit(user, 1_300)  # PENDING: its wake-up is not pumped
    ten_minutes_on = first.created_at + timedelta(minutes=10)

    await report_in_flight(stack.engine, ten_minutes_on)

    def sample(name: str, type_: str, status: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"type": type_, "status": status})

    waiting = ("WITHDRAWAL", "AWAITING_WITHDRAWAL_CODE")
    assert sample("penpay_transactions_in_flight", *waiting) == 2
    assert sample("penpay_transactions_oldest_in_flight_seconds", *waiting) == pytest.approx(600, abs=1)
    assert sample("penpay_transactions_in_flight", "DEPOSIT", "PENDING") == 1
    assert sample("penpay_transactions_in_flight", "DEPOSIT", "NEEDS_REVIEW") == 0
    assert sample("penpay_transactions_oldest_in_flight_seconds", "DEPOSIT", "NEEDS_REVIEW") == 0
    assert sample("penpay_transactions_in_flight", "DEPOSIT", "COMPLETED") is None  # finished: not reported


async def test_a_wake_up_about_a_version_this_process_decided_on_reads_nothing(stack: Stack) -> None:
    user = await stack.user(phone="254700031234")  # lab range F=3: the callback is never delivered
    tx = await stack.deposit(user, 1_300)
    await stack.pump()  # the STK push, its answer stored: waiting for the callback
    looked = await stack.saga.advance(tx.id)  # read under its lock: nothing to do
    assert looked.status is S.AWAITING_MPESA and not looked.seen
    version = (await stack.get(tx.id)).version

    again = await stack.saga.advance(tx.id, version=version)  # e.g. the event of the saga's own step
    newer = await stack.saga.advance(tx.id, version=version + 1)  # a change not read here yet

    assert again.seen and again.status is None and again.actions == ()
    assert not newer.seen and newer.status is S.AWAITING_MPESA


async def _saga_due_at(stack: Stack, tx_id: object) -> datetime | None:
    async with stack.engine.connect() as connection:
        due: datetime | None = (
            await connection.execute(select(transactions.c.saga_due_at).where(transactions.c.id == tx_id))
        ).scalar_one()
    return due


@pytest.mark.saga_pushes
async def test_a_transaction_saved_without_the_saga_s_word_is_left_to_its_event_for_the_grace(
    stack: Stack,
) -> None:
    user = await stack.user()
    tx = await stack.deposit(user, 1_300)  # PENDING, saved by the API: its DepositInitiated wakes the saga
    assert await _saga_due_at(stack, tx.id.value) is None
    grace = timedelta(seconds=10)

    async def swept_at(now: datetime) -> bool:
        found, _ = await stale_transaction_ids(
            stack.engine,
            untouched_since=now,
            limit=10_000,
            now=now,
            quiet_since=now - timedelta(minutes=5),
            unclaimed_since=now - grace,
        )
        return tx.id in {tx_id for tx_id, _ in found}

    saved = (await stack.get(tx.id)).updated_at
    assert not await swept_at(saved + grace - timedelta(milliseconds=1))  # its event's to wake
    assert await swept_at(saved + grace + timedelta(milliseconds=1))  # the event was lost: swept
    assert (await stack.settle(tx.id)).status is S.COMPLETED


async def test_a_deferred_step_is_swept_when_its_wait_is_over_or_at_the_saga_s_earlier_word(
    stack: Stack,
) -> None:
    user = await stack.user(phone="254700031234")  # lab range F=3: the callback is never delivered
    tx = await stack.deposit(user, 1_300)
    await stack.pump()
    promised = await _saga_due_at(stack, tx.id.value)
    assert promised is not None
    now = promised - timedelta(seconds=30)

    async def defer(until: datetime) -> datetime | None:
        async with stack.uow() as uow:
            await uow.saga_steps.defer(tx.id, "stk_query", now=now, until=until, detail="deferred: test")
            await uow.commit()
        return await _saga_due_at(stack, tx.id.value)

    assert await defer(promised + timedelta(minutes=1)) == promised  # the saga's word comes first
    assert await defer(promised - timedelta(seconds=5)) == promised - timedelta(seconds=5)

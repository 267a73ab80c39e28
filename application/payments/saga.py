"""SagaRunner: the asyncio layer around decisions.decide() — one transaction at a time.

The one engine of both sagas (PEC 6.3): a deposit and a withdrawal are two paths through decisions'
one transition table, so one runner advances either. The orchestrators (DepositOrchestrator,
WithdrawalOrchestrator) only start a transaction and run the steps a user waits for; every later
step, and every retry, is taken here.

`advance(tx_id)` loops: load the transaction with its row lock, decide, and execute the
action. An external call is never made inside a database transaction and never before its
intent is committed:

    1. lock, decide, record the intent (evidence row SENT / saga step / float reservation), commit
    2. call out (the id is ours: transfer id, withdrawal id, OriginatorConversationID)
    3. record the answer on the state committed in 1 (its version checked on save; read again,
       locked, only if something moved it meanwhile), commit

A crash between 1 and 3 leaves the intent; the next advance() (a redelivered event or the
sweeper) sees it and resolves by the same id instead of calling blindly. `checkpoint(name)`
is called between those steps: production passes a no-op; the crash tests pass one that
kills the process at a named point.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import structlog

from application.errors import failure_fields
from application.ledger import book, book_all
from application.payments import bookings
from application.payments.decisions import (
    Action,
    Decision,
    SagaPolicy,
    SagaView,
    Step,
    arms_status_query,
    decide,
    next_due,
)
from application.payments.errors import (
    CallDeferred,
    CallOutcomeUnknown,
    CallRefused,
    CallUnavailable,
    NotExecuted,
)
from application.payments.lost_push import CLOCK_MARGIN, judge_retry, push_reference
from application.payments.mpesa_evidence import record_stk_query_answer
from application.payments.ports import (
    DerivDepositGateway,
    DerivWithdrawalGateway,
    MpesaGateway,
    PaymentsUnitOfWork,
    SagaSteps,
    StepRecord,
    Verdict,
)
from domain.payments.attachments import EvidenceStatus, MpesaRequest
from domain.payments.status import TransactionStatus as S
from domain.payments.status import TransactionType, is_legal_transition
from domain.payments.stk_evidence import QueryEffect, StkQueryAnswer
from domain.payments.transaction import Transaction
from domain.shared.errors import ConcurrentModification, DomainError
from domain.shared.ids import LedgerAccountId, TransactionId
from domain.wallet.account_kind import AccountKind, LedgerSide
from domain.wallet.errors import FloorNotKept, Overdraft
from domain.wallet.events import FloatLow
from domain.wallet.ledger_account import LedgerAccount
from domain.wallet.money import Money
from domain.wallet.posting import Posting

log = structlog.get_logger("penpay.saga")

# How long a worker holds an STK push's answer while the database cannot store it (seconds).
# Past the call grace (PENPAY_SAGA_CALL_GRACE) other workers take the answer for lost anyway.
STK_ANSWER_PATIENCE = 60.0

MAX_STEPS_PER_ADVANCE = 12

# How many transactions' last-seen versions a runner remembers (wake-ups about older ones just look).
SEEN_VERSIONS = 10_000

# A call held back by a rate limit waits what the limiter said (at most the policy's cap), spread by
# up to this fraction so the calls it refused together do not all come back in the same instant.
DEFERRAL_JITTER = 0.25


def no_checkpoint(name: str) -> None:
    """Production: checkpoints do nothing."""


def originator_conversation_id(tx_id: TransactionId) -> str:
    # Deterministic from the transaction id: a re-send carries the same id, and Daraja refuses
    # a duplicate instead of paying twice.
    return f"PENPAY-{tx_id.value.hex}"  # = mpesa_adapter.client.originator_conversation_id_for


def refund_transfer_id(tx_id: TransactionId) -> str:
    return f"{tx_id}-refund"


@dataclass(frozen=True, slots=True)
class Advanced:
    """What one advance() did (for logs and tests)."""

    transaction_id: TransactionId
    status: S | None
    actions: tuple[Action, ...]
    # What it stopped on, when that was WAIT (the sweeper asks decisions.next_due of it)
    waiting: SagaView | None = None
    # Left alone: another advance (this process's, or another worker's holding its row) moves it
    busy: bool = False
    # Left alone: a wake-up about a version this process had already read and decided on
    seen: bool = False


@dataclass(frozen=True, slots=True)
class _Then:
    """What a step does once its intent is committed and the connection is back in the pool: the
    external call and its answer. True: decide again (from a fresh locked read); False: stop; an
    STK Query's final answer: recorded under the next step's lock and decided on in its commit."""

    call: Callable[[], Awaitable[bool | StkQueryAnswer]]
    also: Action | None = None  # a second action committed in the same database transaction


# What the deposit's evidence, changed by an STK Query's answer, may decide and commit with it: each
# of these steps saves the transaction. Anything else commits the evidence alone first.
_DECIDED_WITH_ANSWER = frozenset({Action.CREDIT_DEPOSIT, Action.FAIL_DEPOSIT, Action.REVIEW})


# A step's part under the row lock: True when it committed a change to the transaction in hand
# (the next decision starts from that state), False to stop, or the call to make after the commit.
StepOutcome = bool | _Then


@dataclass(slots=True)
class _Owner:
    """This process's advance of one transaction, and whether a wake-up came in meanwhile."""

    done: asyncio.Future[Advanced]
    again: bool = False
    # The newest version such a wake-up named; None: one named no version (it always looks again)
    newest: int | None = 0

    def wake(self, version: int | None) -> None:
        self.again = True
        if version is None or self.newest is None:
            self.newest = None
        else:
            self.newest = max(self.newest, version)


class Payout(Enum):
    """Who takes a withdrawal's payout on from the debit's answer (record_deriv_withdrawal)."""

    RESERVED = "reserved"  # reserved with the debit; the saga, going on from it, sends
    SENT_HERE = "sent_here"  # reserved and its B2C attempt marked with the debit; this process sends
    LATER = "later"  # the debit alone: its status change wakes the saga, which reserves and sends


class SagaRunner:
    """Advances any payment transaction through decisions' one table (see the module docstring)."""

    def __init__(
        self,
        *,
        unit_of_work: Callable[[], PaymentsUnitOfWork],
        mpesa: MpesaGateway,
        deriv_deposits: DerivDepositGateway,
        deriv_withdrawals: DerivWithdrawalGateway,
        policy: SagaPolicy | None = None,
        checkpoint: Callable[[str], None] = no_checkpoint,
        float_thresholds: dict[AccountKind, int] | None = None,
    ) -> None:
        self._uow = unit_of_work
        self._mpesa = mpesa
        self._deriv_deposits = deriv_deposits
        self._deriv_withdrawals = deriv_withdrawals
        self.policy = policy or SagaPolicy()
        self._checkpoint = checkpoint
        self._float_thresholds = float_thresholds or {}
        self._owners: dict[TransactionId, _Owner] = {}
        # The newest version of each transaction this process read under its lock (or committed)
        # and decided on: a wake-up about that version or an older one has nothing new to show.
        self._seen: OrderedDict[TransactionId, int] = OrderedDict()
        # Deposits whose credit goes without the transfer's intent (the float fell short of it)
        self._credit_alone: set[TransactionId] = set()
        # Calls an initiator's request claimed and this process sends in its background
        self._sends: set[asyncio.Task[None]] = set()

    # --- the loop ---------------------------------------------------------------------------

    async def advance(
        self, tx_id: TransactionId, *, if_idle: bool = False, version: int | None = None
    ) -> Advanced:
        """Move the transaction as far as it goes now. One advance per transaction at a time in this
        process: a wake-up for one already being moved makes its owner look once more when done
        (and waits for that); `if_idle` (the sweeper) leaves a transaction another advance holds,
        here or in another worker (its row locked), to that advance. `version`: the one a wake-up
        event names; a wake-up about a version this process already read and decided on (most
        are the saga's own steps' events, or the confirmer's during its STK Query) reads nothing."""
        owner = self._owners.get(tx_id)
        if owner is not None:
            if if_idle:
                return Advanced(tx_id, None, (), busy=True)
            owner.wake(version)
            return await asyncio.shield(owner.done)
        if self._has_seen(tx_id, version):
            return Advanced(tx_id, None, (), seen=True)
        owner = _Owner(asyncio.get_running_loop().create_future())
        self._owners[tx_id] = owner
        try:
            result = await self._advance(tx_id, skip_locked=if_idle)
            # evidence may have come after our last look; not when its version is one we decided on
            while owner.again and not self._has_seen(tx_id, owner.newest):
                owner.again, owner.newest = False, 0
                more = await self._advance(tx_id, skip_locked=False)
                result = replace(more, actions=result.actions + more.actions)
        except BaseException as error:
            # A failed advance is looked at again by its event's redelivery: nothing counts as seen.
            self._seen.pop(tx_id, None)
            owner.done.set_exception(error)
            owner.done.exception()  # retrieved: the waiters, if any, raise it themselves
            raise
        finally:
            del self._owners[tx_id]
        owner.done.set_result(result)
        return result

    def _has_seen(self, tx_id: TransactionId, version: int | None) -> bool:
        seen = self._seen.get(tx_id)
        return version is not None and seen is not None and version <= seen

    def _saw(self, tx: Transaction) -> None:
        """`tx` as read under its lock, or as just committed: its state is what is decided on next."""
        self._seen[tx.id] = tx.version
        self._seen.move_to_end(tx.id)
        if len(self._seen) > SEEN_VERSIONS:
            self._seen.popitem(last=False)

    async def _advance(self, tx_id: TransactionId, *, skip_locked: bool) -> Advanced:
        """Per step: one locked read, one decision, one commit. A step that changed the
        transaction decides its next one from the state it committed, without reading it again;
        only a step to take needs the lock (and so a fresh read)."""
        actions: list[Action] = []
        status: S | None = None
        # An STK Query's final answer, recorded in the next step's unit of work; `asked`: the
        # deposit as read for the query, which that step resumes instead of reading it again
        # (its save's version check stands in for the lock; a change meanwhile: read, locked).
        answer: StkQueryAnswer | None = None
        asked: tuple[Transaction, Mapping[str, StepRecord]] | None = None
        for _ in range(MAX_STEPS_PER_ADVANCE):
            carried, answer = answer, None
            resumed, asked = asked, None
            async with self._uow() as uow:
                if resumed is not None:
                    tx, steps = resumed
                    uow.transactions.resume(tx)
                else:
                    locked = await uow.saga_steps.lock(tx_id, skip_locked=skip_locked)
                    if locked is None:
                        return Advanced(tx_id, status, tuple(actions), busy=skip_locked)
                    skip_locked = False  # only the first look passes over a transaction held elsewhere
                    tx, steps = locked.transaction, locked.steps
                    self._saw(tx)
                try:
                    recorded = carried is not None and await self._record_query_answer(uow, tx, carried)
                    view = self._view(uow.clock.now(), tx, steps)
                    decision = decide(view, self.policy)
                    status = tx.status
                    if recorded and decision.action not in _DECIDED_WITH_ANSWER:
                        await self._commit_change(uow, tx, steps)  # the evidence alone; decided on next
                        continue
                    if decision.action is Action.WAIT:
                        return Advanced(tx_id, status, tuple(actions), waiting=view)
                    actions.append(decision.action)
                    log.info(
                        "saga.step",
                        transaction_id=str(tx_id),
                        status=tx.status.value,
                        action=decision.action.value,
                        why=decision.reason,
                    )
                    outcome = await self._step(decision.action)(uow, tx, steps, decision)
                except FloorNotKept:
                    # A float booked unlocked went below its floor meanwhile: nothing of the step
                    # is committed; the step again, read under the lock, and the float locked too.
                    log.info("saga.float_floor_not_kept", transaction_id=str(tx_id))
                    answer = carried
                    continue
                except ConcurrentModification:
                    if resumed is None:
                        raise
                    # Moved since the query's read (a callback, another worker): nothing of this
                    # step is committed; the answer is judged again on the state read under the lock.
                    log.info("saga.changed_meanwhile", transaction_id=str(tx_id))
                    answer = carried
                    continue
            status = tx.status
            if outcome is _READ_AGAIN:
                answer = carried  # rolled back with the step: recorded again under the next lock
                continue
            if isinstance(outcome, _Then):
                if outcome.also is not None:
                    actions.append(outcome.also)
                called = await outcome.call()
                if isinstance(called, StkQueryAnswer):
                    answer, asked = called, (tx, steps)
                elif not called:
                    break
                continue
            if not outcome:
                break
            self._saw(tx)
            # Committed: what the transaction is now is in hand. Time or evidence moves a waiting
            # one (their events or the sweeper wake it); a step to take reads it again, locked.
            after = self._view(uow.clock.now(), tx, steps)
            if decide(after, self.policy).action is Action.WAIT:
                return Advanced(tx_id, status, tuple(actions), waiting=after)
        return Advanced(tx_id, status, tuple(actions))

    @staticmethod
    def _view(now: datetime, tx: Transaction, steps: Mapping[str, StepRecord]) -> SagaView:
        def status_of(record: Any) -> str | None:
            return None if record is None else str(record.status)

        return SagaView(
            type=tx.type,
            status=tx.status,
            unknown_step=tx.outcome_unknown_step,
            updated_at=tx.updated_at,
            now=now,
            mpesa_request=status_of(tx.mpesa_request),
            mpesa_disbursement=status_of(tx.mpesa_disbursement),
            disbursement_accepted=bool(tx.mpesa_disbursement and tx.mpesa_disbursement.conversation_id),
            deriv_transfer=status_of(tx.deriv_transfer),
            deriv_withdrawal=status_of(tx.deriv_withdrawal),
            steps=steps,
        )

    def _step(
        self, action: Action
    ) -> Callable[
        [PaymentsUnitOfWork, Transaction, Mapping[str, StepRecord], Decision], Awaitable[StepOutcome]
    ]:
        """The part of `action` done under the row lock the decision was taken under."""
        return {
            Action.SEND_STK_PUSH: self._send_stk_push,
            Action.MARK_STK_UNKNOWN: self._mark_stk_unknown,
            Action.FIND_LOST_PUSH: self._find_lost_push,
            Action.CONFIRM_STK: self._confirm_stk,
            Action.CREDIT_DEPOSIT: self._credit_deposit,
            Action.FAIL_DEPOSIT: self._fail_deposit,
            Action.SEND_DERIV_TRANSFER: self._send_deriv_transfer,
            Action.RESOLVE_DERIV_TRANSFER: self._resolve_deriv_transfer,
            Action.FAIL_WITHDRAWAL: self._fail_withdrawal,
            Action.RESOLVE_DERIV_WITHDRAWAL: self._resolve_deriv_withdrawal,
            Action.SEND_B2C: self._send_b2c,
            Action.CONFIRM_B2C: self._confirm_b2c,
            Action.CONFIRM_B2C_ARMED: self._confirm_b2c_armed,
            Action.COMPLETE_WITHDRAWAL: self._complete_withdrawal,
            Action.START_REFUND: self._start_refund,
            Action.RESOLVE_REFUND: self._resolve_refund,
            Action.SEND_REFUND_B2C: self._send_refund_b2c,
            Action.CONFIRM_REFUND_B2C: self._confirm_refund_b2c,
            Action.COMPLETE_REFUND: self._complete_refund,
            Action.REFUND_NOT_PAID: self._refund_not_paid,
            Action.REVIEW: self._review,
        }[action]

    async def _commit_change(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord]
    ) -> bool:
        self._promise(uow, tx, steps)
        await uow.transactions.save(tx)
        await uow.commit()
        return True

    def _promise(self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord]) -> None:
        """Before saving a transaction the saga leaves waiting: when time alone next gives it
        something to do (decisions.next_due), saved with it, so the sweepers of every worker pass over
        it until then instead of each reading it to find it waiting."""
        view = self._view(uow.clock.now(), tx, steps)
        if decide(view, self.policy).action is not Action.WAIT:
            return  # this advance goes on with it
        due = next_due(view, self.policy)
        if due is not None:
            uow.saga_steps.look_again_at(tx.id, due)

    # --- deposit ----------------------------------------------------------------------------

    async def _send_stk_push(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        now = uow.clock.now()
        await uow.saga_steps.start(tx.id, Step.STK_PUSH, now=now)
        await uow.commit()
        pushed = _started(steps, Step.STK_PUSH, now)
        return _Then(lambda: self._call_stk_push(tx, pushed))

    async def claim_stk_push(self, uow: PaymentsUnitOfWork, tx: Transaction) -> Callable[[], Awaitable[None]]:
        """The first push of the new deposit `tx`, by the InitiateDeposit creating it: its intent is
        written in the unit of work that inserts `tx` (one commit for both, not one more of the
        saga's), and the push is sent, once that commit is done, by the call returned. Every other
        process sees the intent and treats the push as in flight, exactly as after a crash between
        a saga's intent and its call: the call grace, then M-Pesa's own records (lost_push).
        The push records its answer on a copy of `tx` taken when it starts, after the commit:
        `tx` itself stays the caller's answer, as committed."""
        new_push = tx.type is TransactionType.DEPOSIT and tx.status is S.PENDING and tx.mpesa_request is None
        if not new_push:
            raise ValueError("only a new STK deposit's push is claimed by its initiator")
        now = uow.clock.now()
        await uow.saga_steps.start(tx.id, Step.STK_PUSH, now=now)
        steps = _started({}, Step.STK_PUSH, now)

        return _claimed_call(
            lambda: self._call_stk_push(tx.copied(), steps), tx.id, "saga.initiator_push_failed"
        )

    def send_soon(self, call: Callable[[], Awaitable[None]]) -> None:
        """Run a claimed call (its intent committed) in this process's background: the request that
        claimed it answers without waiting, and a cancelled request cannot cut the call short."""
        task = asyncio.ensure_future(call())
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def drain(self) -> None:
        """Wait until the claimed calls this process sent have their answers recorded (at shutdown,
        before the clients close; tests): one cut short leaves its intent, which the saga resolves
        after the call grace, as after a crash between an intent and its call."""
        while self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)

    async def _call_stk_push(self, tx: Transaction, steps: Mapping[str, StepRecord]) -> bool:
        tx_id = tx.id
        self._checkpoint("deposit.stk_push.before_call")
        try:
            accepted = await self._mpesa.stk_push(
                transaction_id=tx.id, phone=tx.phone.value, amount=tx.amount
            )
        except CallRefused as refused:
            refused_reason = refused.reason
            return await self._finish(
                tx_id,
                lambda t, now: t.fail(f"M-Pesa refused the STK push: {refused_reason}", now=now),
                only_if=S.PENDING,
                known=tx,
            )
        except CallUnavailable as unavailable:
            # Provably not sent: nothing can be paid, so the deposit ends; the user asks again.
            why = unavailable.reason
            return await self._finish(
                tx_id,
                lambda t, now: t.fail(f"M-Pesa is unavailable: {why}", now=now),
                only_if=S.PENDING,
                known=tx,
            )
        except CallOutcomeUnknown:
            return False  # MARK_STK_UNKNOWN after the grace period
        self._checkpoint("deposit.stk_push.after_call")

        def record(t: Transaction, now: Any) -> None:
            t.stk_push_sent(
                MpesaRequest.sent(
                    transaction_id=t.id,
                    checkout_request_id=accepted.checkout_request_id,
                    merchant_request_id=accepted.merchant_request_id,
                    phone=t.phone,
                    amount=t.amount,
                    now=now,
                ),
                now=now,
            )

        checkout = accepted.checkout_request_id
        parked = await self._record_stk_answer(tx_id, record, steps, known=tx, checkout=checkout)
        # A fast payer's callback can beat that commit; the inbox kept it aside as unknown. Take it
        # in now instead of waiting for the STK-callback timer. A crash or failure here leaves it
        # parked, and the timer's STK Query settles the deposit as before.
        if parked is False:
            return False  # asked in the answer's own commit: none came first; its callback wakes us
        try:
            adopted = await self._mpesa.stk_answer_recorded(checkout, parked=bool(parked))
        except Exception as error:
            log.warning("saga.early_callback_not_adopted", transaction_id=str(tx_id), **failure_fields(error))
            return False
        return adopted  # True: the evidence is there, decide again; else the callback wakes us

    async def _record_stk_answer(
        self,
        tx_id: TransactionId,
        record: Callable[[Transaction, Any], None],
        steps: Mapping[str, StepRecord],
        *,
        known: Transaction | None = None,
        checkout: str,
    ) -> bool | None:
        """An STK push carries no id of ours: its CheckoutRequestID, held only in memory here, is
        the one way to query the payment later. Keep trying to store it while the database is
        away (a restart, a failover) instead of dropping it and leaving the charge to review.

        Whether a callback is parked under that id (it came before this commit) is asked in the
        same database transaction, after the request row's insert: an unknown id's callback holds
        the key's gap locked until it has parked and committed (mpesa_evidence), so the insert
        waits for it and the read after sees it; a callback after the insert waits for the commit
        and then finds the request. Only when no plain read came before the insert (REPEATABLE
        READ takes its snapshot at the first one): the state this process committed, saved as it
        stands. After a locked read (its subqueries take the snapshot, maybe before the parked
        row's commit) nothing is asked: None, and the caller asks after the commit, as it does
        when the answer was not stored."""

        parked: list[bool | None] = [None]

        async def look_for_parked(uow: PaymentsUnitOfWork, after_read: bool) -> None:
            parked[0] = None if after_read else await uow.callback_reviews.any_parked(checkout)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + STK_ANSWER_PATIENCE
        while True:
            parked[0] = None
            try:
                await self._finish_tx(
                    tx_id,
                    _applying(record),
                    only_if=S.PENDING,
                    steps=steps,
                    known=known,
                    before_commit=look_for_parked,
                )
                return parked[0]
            except DomainError:
                raise
            except Exception as error:
                known = None  # changed in memory by the failed attempt: the next one reads afresh
                if loop.time() > deadline:
                    raise
                log.warning(
                    "saga.stk_answer_not_stored_yet", transaction_id=str(tx_id), **failure_fields(error)
                )
                # Short steps: the answer must land before another worker's call grace runs out.
                await asyncio.sleep(0.25)

    async def _mark_stk_unknown(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        tx.mark_outcome_unknown(decision.reason, now=uow.clock.now())
        return await self._commit_change(uow, tx, steps)

    async def _find_lost_push(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        # Read-only: nothing to commit; the lock goes with the unit of work before the lookup.
        now = uow.clock.now()
        return _Then(lambda: self._look_up_lost_push(tx, decision, now))

    async def _look_up_lost_push(self, tx: Transaction, decision: Decision, now: datetime) -> bool:
        """A push whose answer was lost, in M-Pesa's own records: one payment of the deposit's amount
        listed under the push's AccountReference, and the callback parked for want of the push's
        CheckoutRequestID naming its receipt (lost_push.judge_retry, the rule two people approve a
        RETRY by). The id is recorded as the push's answer and the callback taken in; the deposit
        goes on as any push, STK Query asked before it is credited. Anything less counts an
        attempt; when they run out, people decide (and only they may fail it)."""
        try:
            records = await self._mpesa.lost_push_records(since=tx.created_at - CLOCK_MARGIN, until=now)
        except CallUnavailable as unavailable:
            await self._count_attempt(tx.id, Step.PUSH_LOOKUP, f"M-Pesa's list not read: {unavailable}")
            return False
        except Exception:
            with contextlib.suppress(Exception):  # the lookup's own error is the one to report
                await self._count_attempt(tx.id, Step.PUSH_LOOKUP, decision.reason)
            raise
        judged = judge_retry(records, reference=push_reference(tx.id), amount=tx.amount)
        found = judged.found
        if found is None:
            await self._count_attempt(
                tx.id, Step.PUSH_LOOKUP, judged.denial or judged.wait or decision.reason
            )
            return False

        def record(t: Transaction, at: Any) -> None:
            if t.mpesa_request is not None:
                return  # another worker recorded it first
            t.lost_push_answer_found(
                checkout_request_id=found.checkout_request_id,
                merchant_request_id=found.merchant_request_id,
                now=at,
            )

        if await self._finish_tx(tx.id, _applying(record), only_if=S.OUTCOME_UNKNOWN, known=tx) is None:
            return True  # it moved meanwhile: decide again
        log.info("saga.lost_push_found", transaction_id=str(tx.id), receipt=found.receipt)
        try:
            await self._mpesa.stk_answer_recorded(found.checkout_request_id, parked=True)
        except Exception as error:  # left parked: the STK Query settles the deposit without it
            log.warning(
                "saga.parked_callback_not_taken_in", transaction_id=str(tx.id), **failure_fields(error)
            )
        return True

    async def _confirm_stk(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        # Read-only: nothing to commit; the lock goes with the unit of work before the query.
        return _Then(lambda: self._query_stk(tx, decision))

    async def _query_stk(self, tx: Transaction, decision: Decision) -> bool | StkQueryAnswer:
        """The STK Query moves no money, so no intent is written before it: its attempt is counted
        with the answer when that answer settles nothing (a crash before that only asks again).
        A final answer is the evidence itself: handed back to be recorded under the next step's
        lock, in the commit of what it decides (the credit, the failure, the review), so the
        evidence and the money move together. The step's own read goes with the query."""
        request = tx.mpesa_request
        if request is None:
            return True
        if request.status == EvidenceStatus.SENT and await self._took_in_parked(tx.id, request):
            return True  # decide again on the callback
        try:
            asked = await self._mpesa.query_stk(tx)
        except Exception:
            with contextlib.suppress(Exception):  # the query's own error is the one to report
                await self._count_attempt(tx.id, Step.STK_QUERY, decision.reason)
            raise
        if asked is Verdict.PENDING:
            await self._count_attempt(tx.id, Step.STK_QUERY, decision.reason)
            return False
        return asked if isinstance(asked, StkQueryAnswer) else True  # settled already: decide again

    async def _took_in_parked(self, tx_id: TransactionId, request: MpesaRequest) -> bool:
        """No callback recorded yet: one may be parked under the push's id, left there when taking
        it in failed or a crash came first (after the push's answer, or a lost push's, was stored).
        Taken in now, before STK Query is asked, so it is judged as evidence, not left for a person."""
        try:
            return await self._mpesa.stk_answer_recorded(request.checkout_request_id)
        except Exception as error:
            log.warning(
                "saga.parked_callback_not_taken_in", transaction_id=str(tx_id), **failure_fields(error)
            )
            return False

    async def _record_query_answer(
        self, uow: PaymentsUnitOfWork, tx: Transaction, answer: StkQueryAnswer
    ) -> bool:
        """The STK Query's answer on `tx` as just read under its lock (the rules judge it against
        the evidence as it stands now, whatever came meanwhile). True when it changed the evidence:
        saved with the step it decides."""
        effect = await record_stk_query_answer(uow, tx, answer)
        if effect is QueryEffect.CONTRADICTED:
            log.warning("saga.stk_query_contradicts_callback", transaction_id=str(tx.id))
        return effect is not QueryEffect.SETTLED

    async def _count_attempt(self, tx_id: TransactionId, step: Step, detail: str) -> None:
        async with self._uow() as uow:
            await uow.saga_steps.start(tx_id, step, now=uow.clock.now(), detail=detail)
            await uow.commit()

    async def _credit_deposit(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        request = tx.mpesa_request
        assert request is not None  # the decision stands on its CONFIRMED evidence
        now = uow.clock.now()
        received = await bookings.deposit_received(uow.ledger, tx)
        tx.mpesa_confirmed(
            mpesa_receipt_number=request.mpesa_receipt_number,
            amount=tx.amount,
            raw_callback=request.raw_callback,
            result_desc=request.result_desc,
            now=now,
        )
        # Straight on, in the same database transaction, to the transfer's intent when the rules
        # say so: the credit, the float reservation and the intent commit together, once.
        alone = tx.id in self._credit_alone
        self._credit_alone.discard(tx.id)
        if alone or decide(self._view(now, tx, steps), self.policy).action is not Action.SEND_DERIV_TRANSFER:
            await uow.transactions.save(tx)  # the transaction's row before the ledger's, as below
            await book_all(uow, received)
            self._checkpoint("deposit.credit.before_commit")
            await uow.commit()
            self._checkpoint("deposit.credit.after_commit")
            return True
        transfer = await bookings.deposit_transfer(uow.ledger, tx)
        tx.deriv_transfer_sent(now=now)
        await uow.saga_steps.start(tx.id, Step.DERIV_TRANSFER, now=now)
        self._promise(uow, tx, _started(steps, Step.DERIV_TRANSFER, now))
        await uow.transactions.save(tx)
        # The ledger last: the system accounts every deposit books (the floats, FX, FX_SPREAD) are
        # locked from here to the commit only, not across this step's other writes.
        try:
            accounts = await book_all(uow, [*received, transfer], keep_above=self._float_thresholds)
        except Overdraft:
            # The float cannot cover the transfer: nothing is committed; the credit goes alone, and
            # the transfer's own step finds the float short (FLOAT_WAIT, FloatLow) as ever.
            self._credit_alone.add(tx.id)
            return _READ_AGAIN
        await self._float_crossed(uow, transfer, AccountKind.DERIV_AGENT_FLOAT, accounts)
        self._checkpoint("deposit.credit.before_commit")
        self._checkpoint("deposit.transfer.before_commit")
        await uow.commit()
        self._checkpoint("deposit.credit.after_commit")
        log.info(
            "saga.step",
            transaction_id=str(tx.id),
            status=S.MPESA_CONFIRMED.value,
            action=Action.SEND_DERIV_TRANSFER.value,
            why="committed with the credit",
        )
        return _Then(lambda: self._transfer_after_intent(tx), also=Action.SEND_DERIV_TRANSFER)

    async def _fail_deposit(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        request = tx.mpesa_request
        assert request is not None
        tx.mpesa_failed(
            result_code=request.result_code or 1,
            result_desc=request.result_desc,
            raw_callback=request.raw_callback,
            now=uow.clock.now(),
        )
        return await self._commit_change(uow, tx, steps)

    async def _send_deriv_transfer(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        now = uow.clock.now()
        posting = await bookings.deposit_transfer(uow.ledger, tx)
        if not await self._reserve(uow, tx, posting, AccountKind.DERIV_AGENT_FLOAT):
            return False
        tx.deriv_transfer_sent(now=now)
        await uow.saga_steps.start(tx.id, Step.DERIV_TRANSFER, now=now)
        self._promise(uow, tx, _started(steps, Step.DERIV_TRANSFER, now))
        await uow.transactions.save(tx)
        self._checkpoint("deposit.transfer.before_commit")
        await uow.commit()
        return _Then(lambda: self._transfer_after_intent(tx))

    async def _transfer_after_intent(self, tx: Transaction) -> bool:
        self._checkpoint("deposit.transfer.before_call")
        return await self._call_deriv_transfer(tx)

    async def _resolve_deriv_transfer(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        await uow.saga_steps.start(tx.id, Step.DERIV_TRANSFER, now=uow.clock.now(), detail=decision.reason)
        await uow.commit()
        return _Then(lambda: self._call_deriv_transfer(tx))

    async def _call_deriv_transfer(self, tx: Transaction) -> bool:
        assert tx.converted_amount is not None
        try:
            receipt = await self._deriv_deposits.transfer(
                transfer_id=str(tx.id), loginid=tx.deriv_login_id, amount=tx.converted_amount
            )
        except CallRefused as refused:
            refused_reason = refused.reason

            async def refuse(uow: PaymentsUnitOfWork, t: Transaction) -> None:
                # The transaction's row first, then the ledger's (the order of the locked read)
                t.deriv_transfer_refused(refused_reason, now=uow.clock.now())
                await uow.transactions.save(t)
                await book(uow, await bookings.deposit_transfer_refused(uow.ledger, t))

            await self._finish_tx(tx.id, refuse, only_if=(S.DERIV_TRANSFER_SENT, S.OUTCOME_UNKNOWN), known=tx)
            return True
        except CallDeferred as deferred:
            await self._defer(tx.id, Step.DERIV_TRANSFER, deferred)
            return False
        except (CallOutcomeUnknown, CallUnavailable, NotExecuted) as lost:
            lost_reason = lost.reason
            lost_unknown = isinstance(lost, CallOutcomeUnknown)
            log.warning("saga.deriv_transfer_unresolved", transaction_id=str(tx.id), error=lost_reason)
            if lost_unknown:
                await self._finish(
                    tx.id,
                    lambda t, now: t.mark_outcome_unknown(f"Deriv transfer: {lost_reason}", now=now),
                    only_if=S.DERIV_TRANSFER_SENT,
                    known=tx,
                )
            if isinstance(lost, CallOutcomeUnknown) and lost.retry_after is not None:
                await self._defer(tx.id, Step.DERIV_TRANSFER, lost)
            return False
        self._checkpoint("deposit.transfer.after_call")
        await self._finish(
            tx.id,
            lambda t, now: t.deriv_transfer_completed(
                deriv_transaction_id=receipt.deriv_transaction_id, now=now
            ),
            only_if=(S.DERIV_TRANSFER_SENT, S.OUTCOME_UNKNOWN),
            known=tx,
        )
        return False

    # --- withdrawal -------------------------------------------------------------------------

    async def _fail_withdrawal(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        tx.fail(decision.reason, now=uow.clock.now())
        return await self._commit_change(uow, tx, steps)

    async def _resolve_deriv_withdrawal(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        await uow.saga_steps.start(tx.id, Step.DERIV_WITHDRAWAL, now=uow.clock.now(), detail=decision.reason)
        await uow.commit()
        return _Then(lambda: self._look_up_deriv_withdrawal(tx))

    async def _look_up_deriv_withdrawal(self, tx: Transaction) -> bool:
        tx_id = tx.id
        try:
            receipt = await self._deriv_withdrawals.withdraw(
                withdrawal_id=str(tx.id),
                client_token="",  # looked up on the agent's side: the user's token is not needed
                verification_code="",
                amount=tx.amount,
                resolve_only=True,
                account=tx.deriv_login_id,  # the transport the debit went out on
            )
        except (NotExecuted, CallRefused) as absent:
            absent_reason = absent.reason
            return await self._finish(
                tx_id,
                lambda t, now: t.fail(f"the Deriv withdrawal did not happen: {absent_reason}", now=now),
                only_if=(S.AWAITING_WITHDRAWAL_CODE, S.OUTCOME_UNKNOWN),
                known=tx,
            )
        except CallDeferred as deferred:
            await self._defer(tx_id, Step.DERIV_WITHDRAWAL, deferred)
            return False
        except (CallOutcomeUnknown, CallUnavailable) as lost:
            lost_reason = lost.reason
            lost_unknown = isinstance(lost, CallOutcomeUnknown)
            log.warning("saga.deriv_withdrawal_unresolved", transaction_id=str(tx_id), error=lost_reason)
            if lost_unknown:
                await self._finish(
                    tx_id,
                    lambda t, now: t.mark_outcome_unknown(f"Deriv withdrawal: {lost_reason}", now=now),
                    only_if=S.AWAITING_WITHDRAWAL_CODE,
                    known=tx,
                )
            if isinstance(lost, CallOutcomeUnknown) and lost.retry_after is not None:
                await self._defer(tx_id, Step.DERIV_WITHDRAWAL, lost)
            return False
        await self.record_deriv_withdrawal(tx_id, receipt.deriv_transaction_id, known=tx)
        return True

    async def record_deriv_withdrawal(
        self,
        tx_id: TransactionId,
        deriv_transaction_id: int,
        *,
        known: Transaction | None = None,
        also: Callable[[PaymentsUnitOfWork, Transaction], Awaitable[None]] | None = None,
        payout: Payout = Payout.RESERVED,
    ) -> Transaction | None:
        """Deriv debited the user: book it and convert (shared with ConfirmWithdrawal) and, in the same
        database transaction when the rules say so and `payout` is not LATER, reserve the M-Pesa
        float and record the payout about to be sent (MPESA_DISBURSEMENT_SENT, its evidence SENT):
        the debit, the conversion and the reservation commit together, once. RESERVED (the saga's
        own lookup, which goes on from there): the saga's SEND_B2C sends at once while no attempt
        is marked. SENT_HERE (ConfirmWithdrawal): the B2C step (the mark that the one send may have
        left) is written in that database transaction too, and this process sends the B2C once it
        commits (send_soon): every other process sees the attempt and waits for its answer, the
        call grace, then Transaction Status, exactly as after a crash between the saga's SEND_B2C
        intent and its call. LATER: the debit alone, whose status change wakes the saga's SEND_B2C.
        A float too low: the debit alone, and SEND_B2C finds the float short (FLOAT_WAIT, FloatLow)
        as ever. The transaction as committed, or None when it had moved on; `known`: as this
        process last committed it (see _finish_tx); `also`: written in the same database
        transaction, after (ConfirmWithdrawal's answer under the caller's key)."""
        claimed: list[Transaction] = []  # the payout this call's committed change claimed

        def debited(reserve: bool) -> Callable[[PaymentsUnitOfWork, Transaction], Awaitable[None]]:
            async def change(uow: PaymentsUnitOfWork, t: Transaction) -> None:
                claimed.clear()  # a change read again and applied afresh claims afresh
                now = uow.clock.now()
                t.deriv_withdrawal_done(deriv_transaction_id=deriv_transaction_id, now=now)
                postings = await bookings.withdrawal_debited(uow.ledger, t)
                reserved = None
                if reserve and decide(self._view(now, t, {}), self.policy).action is Action.SEND_B2C:
                    reserved = await bookings.withdrawal_payout(uow.ledger, t)
                    t.mpesa_disbursement_sent(
                        originator_conversation_id=originator_conversation_id(t.id), now=now
                    )
                    if payout is Payout.SENT_HERE:
                        detail = "sent by the ConfirmWithdrawal that recorded the debit"
                        await uow.saga_steps.start(t.id, Step.B2C, now=now, detail=detail)
                        self._promise(uow, t, _started({}, Step.B2C, now, detail))
                        claimed.append(t)
                # The transaction's row first, then the ledger's (the order of the locked read)
                await uow.transactions.save(t)
                booked = [*postings, *([reserved] if reserved else [])]
                accounts = await book_all(uow, booked, keep_above=self._float_thresholds)
                if reserved is not None:
                    await self._float_crossed(uow, reserved, AccountKind.MPESA_FLOAT, accounts)
                if also is not None:
                    await also(uow, t)

            return change

        only_if = (S.AWAITING_WITHDRAWAL_CODE, S.OUTCOME_UNKNOWN)
        try:
            reserve = payout is not Payout.LATER
            done = await self._finish_tx(tx_id, debited(reserve), only_if=only_if, known=known)
        except Overdraft:
            # The float cannot cover the payout: nothing was committed (`known` is spent)
            return await self._finish_tx(tx_id, debited(False), only_if=only_if)
        if done is not None and claimed:
            sent = done.copied()  # the answer is recorded on a copy: `done` is the caller's
            self.send_soon(_claimed_call(lambda: self._call_b2c(sent), done.id, "saga.claimed_b2c_failed"))
        return done

    async def _send_b2c(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        now = uow.clock.now()
        if tx.status is S.DERIV_WITHDRAWAL_DONE:
            posting = await bookings.withdrawal_payout(uow.ledger, tx)
            if not await self._reserve(uow, tx, posting, AccountKind.MPESA_FLOAT):
                return False
            tx.mpesa_disbursement_sent(originator_conversation_id=originator_conversation_id(tx.id), now=now)
            self._promise(uow, tx, _started(steps, Step.B2C, now, decision.reason))
            await uow.transactions.save(tx)
        elif steps.get(Step.B2C_QUERY.value) is not None:
            # Sent again: this send's outcome gets Transaction Status's whole budget of its own.
            await uow.saga_steps.reset(tx.id, Step.B2C_QUERY.value, now=now, detail=decision.reason)
        await uow.saga_steps.start(tx.id, Step.B2C, now=now, detail=decision.reason)
        self._checkpoint("withdrawal.b2c.before_commit")
        await uow.commit()
        return _Then(lambda: self._call_b2c(tx))

    async def _call_b2c(self, tx: Transaction) -> bool:
        tx_id = tx.id
        self._checkpoint("withdrawal.b2c.before_call")
        assert tx.converted_amount is not None
        try:
            conversation_id = await self._mpesa.b2c(
                originator_conversation_id=originator_conversation_id(tx.id),
                phone=tx.phone.value,
                amount=tx.converted_amount,
            )
        except CallRefused as refused:
            refused_reason = refused.reason

            # Refused before acceptance: nothing was paid. Evidence FAILED, then the refund path.
            def failed(t: Transaction, now: Any) -> None:
                t.mpesa_disbursement_failed(
                    result_code=1, result_desc=f"refused: {refused_reason}"[:255], raw_result=None, now=now
                )

            return await self._finish(
                tx_id, failed, only_if=(S.MPESA_DISBURSEMENT_SENT, S.OUTCOME_UNKNOWN), known=tx
            )
        except CallDeferred as deferred:
            await self._defer(tx_id, Step.B2C, deferred)
            return False
        except (CallUnavailable, CallOutcomeUnknown) as lost:
            lost_reason = lost.reason
            log.warning("saga.b2c_unresolved", transaction_id=str(tx_id), error=lost_reason)
            return False  # re-sent with the same id after the grace period
        self._checkpoint("withdrawal.b2c.after_call")
        # An empty ConversationID means a duplicate OriginatorConversationID: an earlier attempt
        # got through. Count it as accepted so we wait for its result instead of sending again.
        accepted_as = conversation_id or "DUPLICATE-OCID"
        await self._finish(
            tx_id,
            lambda t, now: t.mpesa_disbursement_accepted(conversation_id=accepted_as, now=now),
            only_if=(S.MPESA_DISBURSEMENT_SENT, S.OUTCOME_UNKNOWN),
            known=tx,
        )
        return False  # the result callback wakes us

    async def _confirm_b2c(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        disbursement = tx.mpesa_disbursement
        assert disbursement is not None  # the decision stands on its evidence
        await uow.saga_steps.start(tx.id, Step.B2C_QUERY, now=uow.clock.now(), detail=decision.reason)
        await uow.commit()
        return _Then(lambda: self._ask_b2c_status(disbursement.originator_conversation_id, tx))

    async def _confirm_b2c_armed(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        """The query the B2C answer's commit armed: read-only, so nothing is written (the unit of
        work ends with the lock released before the call). Asked again by whatever wakes the saga
        within its interval, a crash meanwhile included; counted as ever after it."""
        disbursement = tx.mpesa_disbursement
        assert disbursement is not None  # the decision stands on its evidence
        ocid = disbursement.originator_conversation_id

        async def ask() -> bool:
            self._checkpoint("withdrawal.b2c_query.armed_before_call")
            answered = await self._ask_b2c_status(ocid, tx)
            self._checkpoint("withdrawal.b2c_query.armed_after_call")
            return answered

        return _Then(ask)

    async def _ask_b2c_status(self, originator_conversation_id: str, read: Transaction) -> bool:
        # `read`: as this step read it under the lock (its evidence is what was decided on)
        verdict = await self._mpesa.confirm_b2c(originator_conversation_id, read=read)
        return verdict is not Verdict.PENDING

    async def _complete_withdrawal(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        _complete_disbursement(tx, uow.clock.now())
        return await self._commit_change(uow, tx, steps)

    async def _start_refund(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        await book_all(uow, await bookings.withdrawal_reversal(uow.ledger, tx))
        await uow.saga_steps.start(tx.id, Step.REFUND, now=uow.clock.now(), detail=decision.reason)
        self._checkpoint("withdrawal.refund.before_commit")
        await uow.commit()
        return _Then(lambda: self._refund_after_intent(tx))

    async def _refund_after_intent(self, tx: Transaction) -> bool:
        self._checkpoint("withdrawal.refund.before_call")
        return await self._call_refund(tx)

    async def _resolve_refund(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        await uow.saga_steps.start(tx.id, Step.REFUND, now=uow.clock.now(), detail=decision.reason)
        await uow.commit()
        return _Then(lambda: self._call_refund(tx))

    async def _call_refund(self, tx: Transaction) -> bool:
        try:
            await self._deriv_deposits.transfer(
                transfer_id=refund_transfer_id(tx.id), loginid=tx.deriv_login_id, amount=tx.amount
            )
        except CallRefused as refused:
            refused_reason = refused.reason
            return await self._finish(
                tx.id,
                lambda t, now: t.needs_review(f"refund transfer refused by Deriv: {refused_reason}", now=now),
                only_if=(S.MPESA_DISBURSEMENT_SENT, S.OUTCOME_UNKNOWN),
                known=tx,
            )
        except CallDeferred as deferred:
            await self._defer(tx.id, Step.REFUND, deferred)
            return False
        except (CallOutcomeUnknown, CallUnavailable, NotExecuted) as lost:
            lost_reason = lost.reason
            log.warning("saga.refund_unresolved", transaction_id=str(tx.id), error=lost_reason)
            if isinstance(lost, CallOutcomeUnknown) and lost.retry_after is not None:
                await self._defer(tx.id, Step.REFUND, lost)
            return False
        self._checkpoint("withdrawal.refund.after_call")
        reason = "B2C payout failed; the USD was sent back to the user's Deriv account"
        await self._finish(
            tx.id,
            lambda t, now: t.reverse(reason, now=now),
            only_if=(S.MPESA_DISBURSEMENT_SENT, S.OUTCOME_UNKNOWN),
            known=tx,
        )
        return False

    # --- deposit refund (approved in review) ---------------------------------------------

    async def _send_refund_b2c(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        assert tx.mpesa_disbursement is not None  # the decision stands on its evidence
        # The step is the mark that the one send may have left: after it, only queries.
        await uow.saga_steps.start(tx.id, Step.REFUND_B2C, now=uow.clock.now(), detail=decision.reason)
        self._checkpoint("refund.b2c.before_commit")
        await uow.commit()
        return _Then(lambda: self._call_refund_b2c(tx))

    async def _call_refund_b2c(self, tx: Transaction) -> bool:
        tx_id = tx.id
        self._checkpoint("refund.b2c.before_call")
        refund = tx.mpesa_disbursement
        assert refund is not None
        try:
            conversation_id = await self._mpesa.b2c(
                originator_conversation_id=refund.originator_conversation_id,
                phone=tx.phone.value,
                amount=refund.amount,
            )
        except CallRefused as refused:
            refused_reason = refused.reason

            def failed(t: Transaction, now: Any) -> None:
                t.mpesa_disbursement_failed(
                    result_code=1, result_desc=f"refused: {refused_reason}"[:255], raw_result=None, now=now
                )

            return await self._finish(tx_id, failed, only_if=S.NEEDS_REVIEW, known=tx)
        except CallDeferred as deferred:
            await self._defer(tx_id, Step.REFUND_B2C, deferred)
            return False
        except (CallUnavailable, CallOutcomeUnknown) as lost:
            log.warning("saga.refund_b2c_unresolved", transaction_id=str(tx_id), error=lost.reason)
            return False  # resolved by Transaction Status after the grace period
        self._checkpoint("refund.b2c.after_call")
        accepted_as = conversation_id or "DUPLICATE-OCID"
        await self._finish(
            tx_id,
            lambda t, now: t.mpesa_disbursement_accepted(conversation_id=accepted_as, now=now),
            only_if=S.NEEDS_REVIEW,
            known=tx,
        )
        return False  # the result callback wakes us

    async def _confirm_refund_b2c(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        refund = tx.mpesa_disbursement
        assert refund is not None  # the decision stands on its evidence
        await uow.saga_steps.start(tx.id, Step.REFUND_B2C_QUERY, now=uow.clock.now(), detail=decision.reason)
        await uow.commit()
        return _Then(lambda: self._ask_b2c_status(refund.originator_conversation_id, tx))

    async def _complete_refund(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        tx.refund_paid(now=uow.clock.now())
        return await self._commit_change(uow, tx, steps)

    async def _refund_not_paid(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        await book(uow, await bookings.deposit_refund_failed(uow.ledger, tx))
        refund = tx.mpesa_disbursement
        why = (refund.result_desc if refund is not None else None) or "no description"
        tx.refund_not_paid(why, now=uow.clock.now())
        return await self._commit_change(uow, tx, steps)

    # --- both -------------------------------------------------------------------------------

    async def _defer(
        self, tx_id: TransactionId, step: Step, deferred: CallDeferred | CallOutcomeUnknown
    ) -> None:
        """A call held back unsent, or a lookup told when to ask again: the attempt started for it
        is given back, and the step waits that long instead of being retried (and counted) at the
        usual pace."""
        wait = min(max(deferred.retry_after or 0.0, 0.0), self.policy.deferral_cap.total_seconds())
        wait *= 1.0 + random.uniform(0.0, DEFERRAL_JITTER)  # spreading retries, not a secret
        async with self._uow() as uow:
            now = uow.clock.now()
            until = now + timedelta(seconds=wait)
            await uow.saga_steps.defer(
                tx_id, step, now=now, until=until, detail=f"deferred: {deferred.reason}"
            )
            await uow.commit()
        log.info("saga.call_deferred", transaction_id=str(tx_id), step=step.value, seconds=round(wait, 1))

    async def _review(
        self, uow: PaymentsUnitOfWork, tx: Transaction, steps: Mapping[str, StepRecord], decision: Decision
    ) -> StepOutcome:
        now = uow.clock.now()
        # Waiting states (no answer yet) reach review through OUTCOME_UNKNOWN, as the table says.
        if not is_legal_transition(tx.type, tx.status, S.NEEDS_REVIEW):
            tx.mark_outcome_unknown(decision.reason, now=now)
        tx.needs_review(decision.reason, now=now)
        return await self._commit_change(uow, tx, steps)

    async def _reserve(
        self, uow: PaymentsUnitOfWork, tx: Transaction, posting: Posting, kind: AccountKind
    ) -> bool:
        """Book a float reservation; a float too low leaves the transaction waiting (committed
        FLOAT_WAIT step + FloatLow event) instead of failing it. True when booked. Crossing the
        low-float threshold downwards raises FloatLow too (once per crossing)."""
        try:
            accounts = await book(uow, posting, keep_above=self._float_thresholds)
        except Overdraft:
            await self._float_wait(uow, tx, posting, kind)
            return False
        await self._float_crossed(uow, posting, kind, accounts)
        return True

    async def _float_wait(
        self, uow: PaymentsUnitOfWork, tx: Transaction, posting: Posting, kind: AccountKind
    ) -> None:
        """The float cannot cover `posting`: FloatLow, and the FLOAT_WAIT step, committed."""
        needed = _reserved(posting)
        threshold = self._float_thresholds.get(kind, 0)
        await self._float_low(uow, kind, needed, needed.amount_minor, threshold)
        await uow.saga_steps.start(
            tx.id, Step.FLOAT_WAIT, now=uow.clock.now(), detail=f"{kind.value} too low"
        )
        await uow.commit()
        log.warning("saga.float_too_low", transaction_id=str(tx.id), float=kind.value)

    async def _float_crossed(
        self,
        uow: PaymentsUnitOfWork,
        posting: Posting,
        kind: AccountKind,
        accounts: Mapping[LedgerAccountId, LedgerAccount],
    ) -> None:
        """FloatLow when `posting` took the float below its threshold (once per crossing)."""
        needed = _reserved(posting)
        # the float as the posting left it: locked and updated, not read again
        float_account = next(
            (a for a in accounts.values() if a.kind is kind and a.currency is needed.currency), None
        )
        if float_account is None:
            return  # booked unlocked, on the condition that it stays at or above the threshold
        threshold = self._float_thresholds.get(kind, 0)
        after = await self._float_low(
            uow, kind, needed, 0, threshold, only_if_crossed=True, account=float_account
        )
        if after is not None:
            log.warning("saga.float_below_threshold", float=kind.value, balance_minor=after)

    @staticmethod
    async def _float_low(
        uow: PaymentsUnitOfWork,
        kind: AccountKind,
        amount: Money,
        needed_minor: int,
        threshold: int,
        *,
        only_if_crossed: bool = False,
        account: LedgerAccount | None = None,
    ) -> int | None:
        if account is None:
            account = await uow.ledger.get_or_create_account(kind=kind, currency=amount.currency)
        balance = account.balance.amount_minor
        if only_if_crossed and not (balance < threshold <= balance + amount.amount_minor):
            return None
        uow.record_events(
            [
                FloatLow(
                    account_id=account.id,
                    kind=kind.value,
                    currency=account.currency,
                    balance_minor=balance,
                    needed_minor=needed_minor,
                    threshold_minor=threshold,
                )
            ]
        )
        return balance

    async def _finish(
        self,
        tx_id: TransactionId,
        change: Callable[[Transaction, Any], None],
        *,
        only_if: S | tuple[S, ...],
        steps: Mapping[str, StepRecord] | None = None,
        known: Transaction | None = None,
    ) -> bool:
        await self._finish_tx(tx_id, _applying(change), only_if=only_if, steps=steps, known=known)
        return True

    async def _finish_tx(
        self,
        tx_id: TransactionId,
        change: Callable[[PaymentsUnitOfWork, Transaction], Any],
        *,
        only_if: S | tuple[S, ...],
        steps: Mapping[str, StepRecord] | None = None,
        known: Transaction | None = None,
        before_commit: Callable[[PaymentsUnitOfWork, bool], Awaitable[None]] | None = None,
    ) -> Transaction | None:
        """Record a call's answer: apply `change` if the transaction is still where the call left it;
        the transaction as committed, or None when it was left alone. `steps`: the saga-step journal
        as this advance left it, when it knows it (then the sweepers are told when to look again).
        `known`: the transaction as this process last committed it (the intent before the call):
        changed and saved as it stands, without reading it again, the save's version check (and
        the evidence row's status check) standing in for the locked read; when anything changed
        it meanwhile, read again under the lock and decided on afresh. `before_commit`: run after
        the save, in the same database transaction, told whether it was read there (True) or not."""
        allowed = (only_if,) if isinstance(only_if, S) else only_if
        if known is not None and known.status in allowed:
            try:
                async with self._uow() as uow:
                    uow.transactions.resume(known)
                    await change(uow, known)
                    if steps is not None:
                        self._promise(uow, known, steps)
                    await uow.transactions.save(known)
                    if before_commit is not None:
                        await before_commit(uow, False)
                    await uow.commit()
                return known
            except ConcurrentModification:
                # `known` is spent (changed in memory, not saved): the stored state decides.
                log.info("saga.changed_meanwhile", transaction_id=str(tx_id))
        try:
            return await self._finish_locked(tx_id, change, allowed, steps, before_commit)
        except FloorNotKept:
            # A float booked unlocked went below its floor meanwhile; now the booking locks it.
            return await self._finish_locked(tx_id, change, allowed, steps, before_commit)

    async def _finish_locked(
        self,
        tx_id: TransactionId,
        change: Callable[[PaymentsUnitOfWork, Transaction], Any],
        allowed: tuple[S, ...],
        steps: Mapping[str, StepRecord] | None,
        before_commit: Callable[[PaymentsUnitOfWork, bool], Awaitable[None]] | None,
    ) -> Transaction | None:
        async with self._uow() as uow:
            tx = await uow.transactions.get_for_update(tx_id)
            if tx is None or tx.status not in allowed:
                return None
            await change(uow, tx)
            if steps is not None:
                self._promise(uow, tx, steps)
            await uow.transactions.save(tx)
            if before_commit is not None:
                await before_commit(uow, True)
            await uow.commit()
        return tx


def _applying(
    change: Callable[[Transaction, Any], None],
) -> Callable[[PaymentsUnitOfWork, Transaction], Awaitable[None]]:
    """A change taking the time, as _finish_tx applies one (with its unit of work)."""

    async def apply(uow: PaymentsUnitOfWork, t: Transaction) -> None:
        change(t, uow.clock.now())

    return apply


def _claimed_call(
    call: Callable[[], Awaitable[object]], tx_id: TransactionId, failed: str
) -> Callable[[], Awaitable[None]]:
    """A call an initiator claimed (its intent committed with the request's own commit), to run in
    the background: a failure is logged (`failed`) and the intent stands, for the saga to resolve
    after the call grace, as after a crash between an intent and its call."""

    async def run() -> None:
        try:
            await call()
        except Exception as error:
            log.warning(failed, transaction_id=str(tx_id), **failure_fields(error))

    return run


def _started(
    steps: Mapping[str, StepRecord], step: Step, now: datetime, detail: str | None = None
) -> dict[str, StepRecord]:
    """`steps` as SagaSteps.start leaves them: one more attempt of `step`, updated now."""
    old = steps.get(step.value)
    record = StepRecord(
        step.value, (old.attempts if old else 0) + 1, old.started_at if old else now, now, detail, None
    )
    return {**steps, step.value: record}


async def _read_again() -> bool:
    return True


# A step that committed nothing and wants the transaction read and decided on again.
_READ_AGAIN = _Then(_read_again)


def _reserved(posting: Posting) -> Money:
    """What a float reservation takes from the float (its credit)."""
    return next(e.amount for e in posting.entries if e.side is LedgerSide.CREDIT)


def complete_if_paid(tx: Transaction, now: datetime, policy: SagaPolicy) -> bool:
    """The saga's COMPLETE_WITHDRAWAL, taken in the unit of work that recorded the evidence proving
    the payout (a Transaction Status answer confirming it), when the one table decides it from that
    state under the running saga's `policy`: the step needs no call, so waking the saga for it would
    only cost a locked read and a commit more. True when completed (saved and committed by the
    caller)."""
    if tx.type is not TransactionType.WITHDRAWAL:
        return False
    view = SagaRunner._view(now, tx, {})
    if decide(view, policy).action is not Action.COMPLETE_WITHDRAWAL:
        return False
    _complete_disbursement(tx, now)
    return True


async def arm_status_query(
    steps: SagaSteps, tx: Transaction, known: Mapping[str, StepRecord], now: datetime, policy: SagaPolicy
) -> bool:
    """The saga's CONFIRM_B2C started in the unit of work that recorded the B2C answer calling for it
    (decisions.arms_status_query; `known`: the steps read under its lock), so the worker the answer's
    event wakes asks Transaction Status without a commit of its own, within one query interval.
    The armed query may leave as late as that, so a counted one is due an interval after it, and
    the sweepers pass over the transaction until then (saved with it): they have nothing to do
    before, and the woken worker has it. True when armed (the caller saves `tx` and commits)."""
    if tx.type is not TransactionType.WITHDRAWAL:
        return False
    if not arms_status_query(SagaRunner._view(now, tx, known), policy):
        return False
    until = now + policy.query_interval
    detail = "armed by the B2C answer: asked by the worker it wakes"
    await steps.arm(tx.id, Step.B2C_QUERY.value, now=now, until=until, detail=detail)
    steps.look_again_at(tx.id, until + policy.query_interval)
    return True


def _complete_disbursement(t: Transaction, now: Any) -> None:
    d = t.mpesa_disbursement
    assert d is not None
    t.mpesa_disbursement_completed(
        transaction_receipt=d.transaction_receipt, result_desc=d.result_desc, raw_result=d.raw_result, now=now
    )


__all__ = [
    "Advanced",
    "EvidenceStatus",
    "Payout",
    "SagaRunner",
    "arm_status_query",
    "complete_if_paid",
    "originator_conversation_id",
    "refund_transfer_id",
]

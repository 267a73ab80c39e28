"""PaymentSaga: the asyncio layer around decisions.decide() — one transaction at a time.

`advance(tx_id)` loops: load the transaction with its row lock, decide, and execute the
action. An external call is never made inside a database transaction and never before its
intent is committed:

    1. lock, decide, record the intent (evidence row SENT / saga step / float reservation), commit
    2. call out (the id is ours: transfer id, withdrawal id, OriginatorConversationID)
    3. lock, record the answer, commit

A crash between 1 and 3 leaves the intent; the next advance() (a redelivered event or the
sweeper) sees it and resolves by the same id instead of calling blindly. `checkpoint(name)`
is called between those steps: production passes a no-op; the crash tests pass one that
kills the process at a named point.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from application.ledger import book, book_all
from application.payments import bookings
from application.payments.decisions import (
    Action,
    Decision,
    SagaPolicy,
    SagaView,
    Step,
    decide,
)
from application.payments.errors import (
    CallDeferred,
    CallOutcomeUnknown,
    CallRefused,
    CallUnavailable,
    NotExecuted,
)
from application.payments.ports import DerivPayments, MpesaGateway, PaymentsUnitOfWork, Verdict
from domain.payments.attachments import EvidenceStatus, MpesaRequest
from domain.payments.status import TransactionStatus as S
from domain.payments.status import is_legal_transition
from domain.payments.transaction import Transaction
from domain.shared.errors import DomainError
from domain.shared.ids import TransactionId
from domain.wallet.account_kind import AccountKind, LedgerSide
from domain.wallet.errors import Overdraft
from domain.wallet.events import FloatLow
from domain.wallet.ledger_account import LedgerAccount
from domain.wallet.money import Money
from domain.wallet.posting import Posting

log = structlog.get_logger("penpay.saga")

# How long a worker holds an STK push's answer while the database cannot store it (seconds).
# Past the call grace (PENPAY_SAGA_CALL_GRACE) other workers take the answer for lost anyway.
STK_ANSWER_PATIENCE = 60.0

MAX_STEPS_PER_ADVANCE = 12

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


class PaymentSaga:
    def __init__(
        self,
        *,
        unit_of_work: Callable[[], PaymentsUnitOfWork],
        mpesa: MpesaGateway,
        deriv: DerivPayments,
        policy: SagaPolicy | None = None,
        checkpoint: Callable[[str], None] = no_checkpoint,
        float_thresholds: dict[AccountKind, int] | None = None,
    ) -> None:
        self._uow = unit_of_work
        self._mpesa = mpesa
        self._deriv = deriv
        self.policy = policy or SagaPolicy()
        self._checkpoint = checkpoint
        self._float_thresholds = float_thresholds or {}

    # --- the loop ---------------------------------------------------------------------------

    async def advance(self, tx_id: TransactionId) -> Advanced:
        actions: list[Action] = []
        status: S | None = None
        for _ in range(MAX_STEPS_PER_ADVANCE):
            async with self._uow() as uow:
                tx = await uow.transactions.get(tx_id)
                if tx is None:
                    return Advanced(tx_id, None, tuple(actions))
                view = await self._view(uow, tx)
                decision = decide(view, self.policy)
            status = tx.status
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
            if decision.action is Action.CONFIRM_STK:
                # Read-only: no intent row, no lock; the query runs from the state just read.
                if not await self._query_stk(tx, decision):
                    break
            elif not await self._execute(tx_id, decision):
                break
        return Advanced(tx_id, status, tuple(actions))

    async def _view(self, uow: PaymentsUnitOfWork, tx: Transaction) -> SagaView:
        def status_of(record: Any) -> str | None:
            return None if record is None else str(record.status)

        return SagaView(
            type=tx.type,
            status=tx.status,
            unknown_step=tx.outcome_unknown_step,
            updated_at=tx.updated_at,
            now=uow.clock.now(),
            mpesa_request=status_of(tx.mpesa_request),
            mpesa_disbursement=status_of(tx.mpesa_disbursement),
            disbursement_accepted=bool(tx.mpesa_disbursement and tx.mpesa_disbursement.conversation_id),
            deriv_transfer=status_of(tx.deriv_transfer),
            deriv_withdrawal=status_of(tx.deriv_withdrawal),
            steps=await uow.saga_steps.get(tx.id),
        )

    async def _locked(
        self, uow: PaymentsUnitOfWork, tx_id: TransactionId, expected: Action
    ) -> Transaction | None:
        """The transaction under its row lock, if the decision still stands (else None)."""
        tx = await uow.transactions.get_for_update(tx_id)
        if tx is None:
            return None
        if decide(await self._view(uow, tx), self.policy).action is not expected:
            return None  # another worker moved it meanwhile
        return tx

    async def _execute(self, tx_id: TransactionId, decision: Decision) -> bool:
        """Run one action; False when the loop should stop (waiting, or nothing changed)."""
        handler = {
            Action.SEND_STK_PUSH: self._send_stk_push,
            Action.MARK_STK_UNKNOWN: self._mark_stk_unknown,
            Action.CONFIRM_STK: self._confirm_stk,
            Action.CREDIT_DEPOSIT: self._credit_deposit,
            Action.FAIL_DEPOSIT: self._fail_deposit,
            Action.SEND_DERIV_TRANSFER: self._send_deriv_transfer,
            Action.RESOLVE_DERIV_TRANSFER: self._resolve_deriv_transfer,
            Action.FAIL_WITHDRAWAL: self._fail_withdrawal,
            Action.RESOLVE_DERIV_WITHDRAWAL: self._resolve_deriv_withdrawal,
            Action.SEND_B2C: self._send_b2c,
            Action.CONFIRM_B2C: self._confirm_b2c,
            Action.COMPLETE_WITHDRAWAL: self._complete_withdrawal,
            Action.START_REFUND: self._start_refund,
            Action.RESOLVE_REFUND: self._resolve_refund,
            Action.SEND_REFUND_B2C: self._send_refund_b2c,
            Action.CONFIRM_REFUND_B2C: self._confirm_refund_b2c,
            Action.COMPLETE_REFUND: self._complete_refund,
            Action.REFUND_NOT_PAID: self._refund_not_paid,
            Action.REVIEW: self._review,
        }[decision.action]
        return await handler(tx_id, decision)

    # --- deposit ----------------------------------------------------------------------------

    async def _send_stk_push(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await self._locked(uow, tx_id, Action.SEND_STK_PUSH)
            if tx is None:
                return True
            await uow.saga_steps.start(tx.id, Step.STK_PUSH, now=uow.clock.now())
            await uow.commit()
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
            )
        except CallUnavailable as unavailable:
            # Provably not sent: nothing can be paid, so the deposit ends; the user asks again.
            why = unavailable.reason
            return await self._finish(
                tx_id, lambda t, now: t.fail(f"M-Pesa is unavailable: {why}", now=now), only_if=S.PENDING
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

        await self._record_stk_answer(tx_id, record)
        # A fast payer's callback can beat that commit; the inbox kept it aside as unknown. Take it
        # in now instead of waiting for the STK-callback timer. A crash or failure here leaves it
        # parked, and the timer's STK Query settles the deposit as before.
        try:
            adopted = await self._mpesa.stk_answer_recorded(accepted.checkout_request_id)
        except Exception as error:
            log.warning(
                "saga.early_callback_not_adopted", transaction_id=str(tx_id), error=type(error).__name__
            )
            return False
        return adopted  # True: the evidence is there, decide again; else the callback wakes us

    async def _record_stk_answer(
        self, tx_id: TransactionId, record: Callable[[Transaction, Any], None]
    ) -> None:
        """An STK push carries no id of ours: its CheckoutRequestID, held only in memory here, is
        the one way to query the payment later. Keep trying to store it while the database is
        away (a restart, a failover) instead of dropping it and leaving the charge to review."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STK_ANSWER_PATIENCE
        while True:
            try:
                await self._finish(tx_id, record, only_if=S.PENDING)
                return
            except DomainError:
                raise
            except Exception as error:
                if loop.time() > deadline:
                    raise
                log.warning(
                    "saga.stk_answer_not_stored_yet", transaction_id=str(tx_id), error=type(error).__name__
                )
                # Short steps: the answer must land before another worker's call grace runs out.
                await asyncio.sleep(0.25)

    async def _mark_stk_unknown(self, tx_id: TransactionId, decision: Decision) -> bool:
        return await self._finish(
            tx_id,
            lambda t, now: t.mark_outcome_unknown(decision.reason, now=now),
            expected=Action.MARK_STK_UNKNOWN,
        )

    async def _confirm_stk(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await uow.transactions.get(tx_id)
        return True if tx is None else await self._query_stk(tx, decision)

    async def _query_stk(self, tx: Transaction, decision: Decision) -> bool:
        """The STK Query moves no money, so no intent is written before it: its attempt is counted
        with the answer when that answer settles nothing (a crash before that only asks again).
        A settled answer is the evidence row itself (the confirmer moves it), so nothing else is
        written then."""
        if tx.mpesa_request is None:
            return True
        try:
            verdict = await self._mpesa.confirm_stk(tx.mpesa_request.checkout_request_id)
        except Exception:
            with contextlib.suppress(Exception):  # the query's own error is the one to report
                await self._count_attempt(tx.id, Step.STK_QUERY, decision.reason)
            raise
        if verdict is Verdict.PENDING:
            await self._count_attempt(tx.id, Step.STK_QUERY, decision.reason)
            return False
        return True  # the evidence row changed: decide again

    async def _count_attempt(self, tx_id: TransactionId, step: Step, detail: str) -> None:
        async with self._uow() as uow:
            await uow.saga_steps.start(tx_id, step, now=uow.clock.now(), detail=detail)
            await uow.commit()

    async def _credit_deposit(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await self._locked(uow, tx_id, Action.CREDIT_DEPOSIT)
            if tx is None or tx.mpesa_request is None:
                return True
            now = uow.clock.now()
            await book_all(uow, await bookings.deposit_received(uow.ledger, tx))
            request = tx.mpesa_request
            tx.mpesa_confirmed(
                mpesa_receipt_number=request.mpesa_receipt_number,
                amount=tx.amount,
                raw_callback=request.raw_callback,
                result_desc=request.result_desc,
                now=now,
            )
            await uow.transactions.save(tx)
            self._checkpoint("deposit.credit.before_commit")
            await uow.commit()
        self._checkpoint("deposit.credit.after_commit")
        return True

    async def _fail_deposit(self, tx_id: TransactionId, decision: Decision) -> bool:
        def fail(t: Transaction, now: Any) -> None:
            request = t.mpesa_request
            assert request is not None
            t.mpesa_failed(
                result_code=request.result_code or 1,
                result_desc=request.result_desc,
                raw_callback=request.raw_callback,
                now=now,
            )

        return await self._finish(tx_id, fail, expected=Action.FAIL_DEPOSIT)

    async def _send_deriv_transfer(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await self._locked(uow, tx_id, Action.SEND_DERIV_TRANSFER)
            if tx is None:
                return True
            now = uow.clock.now()
            posting = await bookings.deposit_transfer(uow.ledger, tx)
            if not await self._reserve(uow, tx, posting, AccountKind.DERIV_AGENT_FLOAT):
                return False
            tx.deriv_transfer_sent(now=now)
            await uow.saga_steps.start(tx.id, Step.DERIV_TRANSFER, now=now)
            await uow.transactions.save(tx)
            self._checkpoint("deposit.transfer.before_commit")
            await uow.commit()
        self._checkpoint("deposit.transfer.before_call")
        return await self._call_deriv_transfer(tx)

    async def _resolve_deriv_transfer(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await self._locked(uow, tx_id, Action.RESOLVE_DERIV_TRANSFER)
            if tx is None:
                return True
            await uow.saga_steps.start(
                tx.id, Step.DERIV_TRANSFER, now=uow.clock.now(), detail=decision.reason
            )
            await uow.commit()
        return await self._call_deriv_transfer(tx)

    async def _call_deriv_transfer(self, tx: Transaction) -> bool:
        assert tx.converted_amount is not None
        try:
            receipt = await self._deriv.transfer(
                transfer_id=str(tx.id), loginid=tx.deriv_login_id, amount=tx.converted_amount
            )
        except CallRefused as refused:
            refused_reason = refused.reason

            async def refuse(uow: PaymentsUnitOfWork, t: Transaction) -> None:
                await book(uow, await bookings.deposit_transfer_refused(uow.ledger, t))
                t.deriv_transfer_refused(refused_reason, now=uow.clock.now())

            return await self._finish_with(tx.id, refuse, only_if=(S.DERIV_TRANSFER_SENT, S.OUTCOME_UNKNOWN))
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
        )
        return False

    # --- withdrawal -------------------------------------------------------------------------

    async def _fail_withdrawal(self, tx_id: TransactionId, decision: Decision) -> bool:
        return await self._finish(
            tx_id, lambda t, now: t.fail(decision.reason, now=now), expected=Action.FAIL_WITHDRAWAL
        )

    async def _resolve_deriv_withdrawal(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await self._locked(uow, tx_id, Action.RESOLVE_DERIV_WITHDRAWAL)
            if tx is None:
                return True
            await uow.saga_steps.start(
                tx.id, Step.DERIV_WITHDRAWAL, now=uow.clock.now(), detail=decision.reason
            )
            await uow.commit()
        try:
            receipt = await self._deriv.withdraw(
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
                )
            if isinstance(lost, CallOutcomeUnknown) and lost.retry_after is not None:
                await self._defer(tx_id, Step.DERIV_WITHDRAWAL, lost)
            return False
        return await self.record_deriv_withdrawal(tx_id, receipt.deriv_transaction_id)

    async def record_deriv_withdrawal(self, tx_id: TransactionId, deriv_transaction_id: int) -> bool:
        """Deriv debited the user: book it and convert (shared with ConfirmWithdrawal)."""

        async def debited(uow: PaymentsUnitOfWork, t: Transaction) -> None:
            await book_all(uow, await bookings.withdrawal_debited(uow.ledger, t))
            t.deriv_withdrawal_done(deriv_transaction_id=deriv_transaction_id, now=uow.clock.now())

        return await self._finish_with(
            tx_id, debited, only_if=(S.AWAITING_WITHDRAWAL_CODE, S.OUTCOME_UNKNOWN)
        )

    async def _send_b2c(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await self._locked(uow, tx_id, Action.SEND_B2C)
            if tx is None:
                return True
            now = uow.clock.now()
            if tx.status is S.DERIV_WITHDRAWAL_DONE:
                posting = await bookings.withdrawal_payout(uow.ledger, tx)
                if not await self._reserve(uow, tx, posting, AccountKind.MPESA_FLOAT):
                    return False
                tx.mpesa_disbursement_sent(
                    originator_conversation_id=originator_conversation_id(tx.id), now=now
                )
                await uow.transactions.save(tx)
            await uow.saga_steps.start(tx.id, Step.B2C, now=now, detail=decision.reason)
            self._checkpoint("withdrawal.b2c.before_commit")
            await uow.commit()
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

            return await self._finish(tx_id, failed, only_if=(S.MPESA_DISBURSEMENT_SENT, S.OUTCOME_UNKNOWN))
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
        )
        return False  # the result callback wakes us

    async def _confirm_b2c(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await self._locked(uow, tx_id, Action.CONFIRM_B2C)
            if tx is None or tx.mpesa_disbursement is None:
                return True
            await uow.saga_steps.start(tx.id, Step.B2C_QUERY, now=uow.clock.now(), detail=decision.reason)
            await uow.commit()
        verdict = await self._mpesa.confirm_b2c(tx.mpesa_disbursement.originator_conversation_id)
        return verdict is not Verdict.PENDING

    async def _complete_withdrawal(self, tx_id: TransactionId, decision: Decision) -> bool:
        return await self._finish(tx_id, _complete_disbursement, expected=Action.COMPLETE_WITHDRAWAL)

    async def _start_refund(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await self._locked(uow, tx_id, Action.START_REFUND)
            if tx is None:
                return True
            await book_all(uow, await bookings.withdrawal_reversal(uow.ledger, tx))
            await uow.saga_steps.start(tx.id, Step.REFUND, now=uow.clock.now(), detail=decision.reason)
            self._checkpoint("withdrawal.refund.before_commit")
            await uow.commit()
        self._checkpoint("withdrawal.refund.before_call")
        return await self._call_refund(tx)

    async def _resolve_refund(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await self._locked(uow, tx_id, Action.RESOLVE_REFUND)
            if tx is None:
                return True
            await uow.saga_steps.start(tx.id, Step.REFUND, now=uow.clock.now(), detail=decision.reason)
            await uow.commit()
        return await self._call_refund(tx)

    async def _call_refund(self, tx: Transaction) -> bool:
        try:
            await self._deriv.transfer(
                transfer_id=refund_transfer_id(tx.id), loginid=tx.deriv_login_id, amount=tx.amount
            )
        except CallRefused as refused:
            refused_reason = refused.reason
            return await self._finish(
                tx.id,
                lambda t, now: t.needs_review(f"refund transfer refused by Deriv: {refused_reason}", now=now),
                only_if=(S.MPESA_DISBURSEMENT_SENT, S.OUTCOME_UNKNOWN),
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
        )
        return False

    # --- deposit refund (approved in review) ---------------------------------------------

    async def _send_refund_b2c(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await self._locked(uow, tx_id, Action.SEND_REFUND_B2C)
            if tx is None or tx.mpesa_disbursement is None:
                return True
            # The step is the mark that the one send may have left: after it, only queries.
            await uow.saga_steps.start(tx.id, Step.REFUND_B2C, now=uow.clock.now(), detail=decision.reason)
            self._checkpoint("refund.b2c.before_commit")
            await uow.commit()
        self._checkpoint("refund.b2c.before_call")
        refund = tx.mpesa_disbursement
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

            return await self._finish(tx_id, failed, only_if=S.NEEDS_REVIEW)
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
        )
        return False  # the result callback wakes us

    async def _confirm_refund_b2c(self, tx_id: TransactionId, decision: Decision) -> bool:
        async with self._uow() as uow:
            tx = await self._locked(uow, tx_id, Action.CONFIRM_REFUND_B2C)
            if tx is None or tx.mpesa_disbursement is None:
                return True
            await uow.saga_steps.start(
                tx.id, Step.REFUND_B2C_QUERY, now=uow.clock.now(), detail=decision.reason
            )
            await uow.commit()
        verdict = await self._mpesa.confirm_b2c(tx.mpesa_disbursement.originator_conversation_id)
        return verdict is not Verdict.PENDING

    async def _complete_refund(self, tx_id: TransactionId, decision: Decision) -> bool:
        return await self._finish(
            tx_id, lambda t, now: t.refund_paid(now=now), expected=Action.COMPLETE_REFUND
        )

    async def _refund_not_paid(self, tx_id: TransactionId, decision: Decision) -> bool:
        async def not_paid(uow: PaymentsUnitOfWork, t: Transaction) -> None:
            await book(uow, await bookings.deposit_refund_failed(uow.ledger, t))
            refund = t.mpesa_disbursement
            why = (refund.result_desc if refund is not None else None) or "no description"
            t.refund_not_paid(why, now=uow.clock.now())

        return await self._finish_with(tx_id, not_paid, expected=Action.REFUND_NOT_PAID)

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

    async def _review(self, tx_id: TransactionId, decision: Decision) -> bool:
        async def review(uow: PaymentsUnitOfWork, t: Transaction) -> None:
            now = uow.clock.now()
            # Waiting states (no answer yet) reach review through OUTCOME_UNKNOWN, as the table says.
            if not is_legal_transition(t.type, t.status, S.NEEDS_REVIEW):
                t.mark_outcome_unknown(decision.reason, now=now)
            t.needs_review(decision.reason, now=now)

        return await self._finish_with(tx_id, review, expected=Action.REVIEW)

    async def _reserve(
        self, uow: PaymentsUnitOfWork, tx: Transaction, posting: Posting, kind: AccountKind
    ) -> bool:
        """Book a float reservation; a float too low leaves the transaction waiting (committed
        FLOAT_WAIT step + FloatLow event) instead of failing it. True when booked. Crossing the
        low-float threshold downwards raises FloatLow too (once per crossing)."""
        needed = next(e.amount for e in posting.entries if e.side is LedgerSide.CREDIT)
        threshold = self._float_thresholds.get(kind, 0)
        try:
            accounts = await book(uow, posting)
        except Overdraft:
            await self._float_low(uow, kind, needed, needed.amount_minor, threshold)
            await uow.saga_steps.start(
                tx.id, Step.FLOAT_WAIT, now=uow.clock.now(), detail=f"{kind.value} too low"
            )
            await uow.commit()
            log.warning("saga.float_too_low", transaction_id=str(tx.id), float=kind.value)
            return False
        # the float as the posting left it: locked and updated, not read again
        float_account = next(
            (a for a in accounts.values() if a.kind is kind and a.currency is needed.currency), None
        )
        after = await self._float_low(
            uow, kind, needed, 0, threshold, only_if_crossed=True, account=float_account
        )
        if after is not None:
            log.warning("saga.float_below_threshold", float=kind.value, balance_minor=after)
        return True

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
        expected: Action | None = None,
        only_if: S | tuple[S, ...] | None = None,
    ) -> bool:
        async def apply(uow: PaymentsUnitOfWork, t: Transaction) -> None:
            change(t, uow.clock.now())

        return await self._finish_with(tx_id, apply, expected=expected, only_if=only_if)

    async def _finish_with(
        self,
        tx_id: TransactionId,
        change: Callable[[PaymentsUnitOfWork, Transaction], Any],
        *,
        expected: Action | None = None,
        only_if: S | tuple[S, ...] | None = None,
    ) -> bool:
        """Apply `change` under the row lock if the transaction is still where we left it."""
        allowed = (only_if,) if isinstance(only_if, S) else only_if
        async with self._uow() as uow:
            if expected is not None:
                tx = await self._locked(uow, tx_id, expected)
            else:
                tx = await uow.transactions.get_for_update(tx_id)
                if tx is not None and allowed is not None and tx.status not in allowed:
                    tx = None
            if tx is None:
                return True
            await change(uow, tx)
            await uow.transactions.save(tx)
            await uow.commit()
        return True


def _complete_disbursement(t: Transaction, now: Any) -> None:
    d = t.mpesa_disbursement
    assert d is not None
    t.mpesa_disbursement_completed(
        transaction_receipt=d.transaction_receipt, result_desc=d.result_desc, raw_result=d.raw_result, now=now
    )


__all__ = ["Advanced", "EvidenceStatus", "PaymentSaga", "originator_conversation_id", "refund_transfer_id"]

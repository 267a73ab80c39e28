"""ReviewService: four-eyes actions on transactions that need a person.

    propose(staff, transaction, kind, reason, evidence)   one operator; nothing moves
    approve(staff, action)                                 another person; checks, then executes
    reject(staff, action, reason)                          another person; nothing moves

Approval follows the sagas' rule: no external call inside a database transaction. It reads the
proposal (refusing the proposer as approver, which is recorded), asks the provider about the
evidence with no lock held, then under the transaction's row lock checks that nothing moved since
the proposal and executes it, or records why it is refused. Every proposal, approval, rejection
and refusal is an audit record naming the proposer and the approver, committed with its effect.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from application.ledger import book
from application.payments import bookings
from application.payments.decisions import Step
from application.payments.errors import (
    CallDeferred,
    CallOutcomeUnknown,
    CallRefused,
    CallUnavailable,
    NotExecuted,
    TransactionNotFound,
)
from application.payments.lost_push import (
    CLOCK_MARGIN,
    Judgement,
    ParkedPayment,
    PulledPayment,
    judge_fail,
    judge_retry,
    push_reference,
)
from application.review.errors import (
    ActionNotPossible,
    EvidenceDenied,
    EvidenceUnavailable,
    FourEyesRequired,
    ProposalAlreadyOpen,
    ProposalNotOpen,
    ReviewActionNotFound,
)
from application.review.ports import (
    DerivLookups,
    DerivStatement,
    MpesaLookups,
    Proposal,
    ReviewUnitOfWork,
    StatementLine,
    StkAnswer,
    StkOutcome,
)
from application.review.rules import ActionKind, Evidence, ProposalStatus, ReviewView, refusal, retry_of
from domain.payments.attachments import EvidenceStatus
from domain.payments.status import TransactionType
from domain.payments.transaction import Transaction
from domain.shared.errors import InvalidValue
from domain.shared.ids import TransactionId, new_uuid7
from domain.shared.json_value import JSONValue

MAX_REASON = 255
# How long after a deposit went to review its lost push may still be paid and listed by M-Pesa:
# the customer's prompt lasts a minute or two; Pull Transactions may list a payment minutes late.
LOST_PUSH_WAIT = timedelta(minutes=10)

log = structlog.get_logger("penpay.review")


def refund_originator_conversation_id(tx_id: TransactionId) -> str:
    """The one OriginatorConversationID of a deposit's refund (Daraja refuses a duplicate)."""
    return f"PENPAY-{tx_id.value.hex}-R"


SUBJECT = "transaction"


def view_of(tx: Transaction) -> ReviewView:
    def status(record: Any) -> str | None:
        return None if record is None else str(record.status)

    return ReviewView(
        type=tx.type,
        status=tx.status,
        mpesa_request=status(tx.mpesa_request),
        mpesa_disbursement=status(tx.mpesa_disbursement),
        deriv_transfer=status(tx.deriv_transfer),
        deriv_withdrawal=status(tx.deriv_withdrawal),
        disbursement_accepted=bool(tx.mpesa_disbursement and tx.mpesa_disbursement.conversation_id),
    )


def _evidence(p: Proposal) -> Evidence:
    return Evidence(deriv_transaction_id=p.deriv_transaction_id, mpesa_receipt=p.mpesa_receipt)


def _clean_reason(text: str, field: str = "reason") -> str:
    cleaned = " ".join(text.split())
    if not cleaned or len(cleaned) > MAX_REASON:
        raise InvalidValue(f"{field}: 1 to {MAX_REASON} characters", field=field)
    return cleaned


def deriv_denial(tx: Transaction, claimed: int | None, line: StatementLine | None) -> str | None:
    """Why the agent's statement does not prove the deposit's transfer with id `claimed`, or None."""
    if line is None:
        return "Deriv's statement has no transfer for this transaction"
    if claimed != line.deriv_transaction_id:
        shown = line.deriv_transaction_id
        return f"Deriv's statement shows transaction {shown} for this transfer, not {claimed}"
    expected = tx.converted_amount
    if (
        expected is None
        or line.amount_cents != expected.amount_minor
        or line.currency != expected.currency.value
    ):
        return f"Deriv's statement shows {line.amount_cents} {line.currency} where the transfer is {expected}"
    if line.to_loginid and line.to_loginid.upper() != tx.deriv_login_id.value.upper():
        return f"Deriv's statement shows the transfer to {line.to_loginid}, not {tx.deriv_login_id.value}"
    return None


def _confirmed_by_the_check(asked: Transaction, now: Transaction, proposal: Proposal) -> bool:
    """The one change since the proposal is M-Pesa's confirmation of the offered receipt, which the
    approval's own Transaction Status check asked for: the aggregate records it on the payout and
    its version moves with it. Any other change (status, reason, Deriv evidence, another payout) is
    a reason to propose again."""
    payout, was = now.mpesa_disbursement, asked.mpesa_disbursement
    return (
        proposal.kind is ActionKind.RESOLVE_COMPLETED
        and now.type is TransactionType.WITHDRAWAL
        and asked.version == proposal.transaction_version
        and (now.status, now.failure_reason, now.deriv_withdrawal)
        == (asked.status, asked.failure_reason, asked.deriv_withdrawal)
        and payout is not None
        and was is not None
        and payout.originator_conversation_id == was.originator_conversation_id
        and payout.status == EvidenceStatus.CONFIRMED
        and payout.transaction_receipt == proposal.mpesa_receipt
    )


def _line_details(line: StatementLine | None) -> JSONValue:
    if line is None:
        return None
    return {
        "deriv_transaction_id": line.deriv_transaction_id,
        "amount_cents": line.amount_cents,
        "currency": line.currency,
        "from_loginid": line.from_loginid,
        "to_loginid": line.to_loginid,
    }


@dataclass(frozen=True, slots=True)
class Checked:
    """What the provider said about a proposal's evidence (asked with no lock held)."""

    line: StatementLine | None = None
    denial: str | None = None  # why the provider's records refuse the proposal
    answer: JSONValue = None  # the provider's answer, for the audit record
    stk: StkOutcome | None = None  # STK Query proved a push unpaid
    push: ParkedPayment | None = None  # the parked callback that gives a lost push its answer
    listed: PulledPayment | None = None  # a lost push's payment taken in on M-Pesa's list alone


class ReviewService:
    def __init__(
        self,
        *,
        unit_of_work: Callable[[str], ReviewUnitOfWork],
        deriv_statement: DerivStatement,
        deriv_lookups: DerivLookups,
        mpesa_lookups: MpesaLookups | None = None,
        lost_push_wait: timedelta = LOST_PUSH_WAIT,
    ) -> None:
        self._uow = unit_of_work  # actor -> unit of work auditing as that actor
        self._deriv = deriv_statement
        self._lookups = deriv_lookups
        self._mpesa = mpesa_lookups  # None: the actions that need M-Pesa's word are refused
        self._lost_push_wait = lost_push_wait

    # --- propose ----------------------------------------------------------------------------

    async def propose(
        self,
        *,
        staff: str,
        transaction_id: TransactionId,
        kind: ActionKind,
        reason: str,
        evidence: Evidence,
    ) -> Proposal:
        why = _clean_reason(reason)
        if evidence.deriv_transaction_id is not None and evidence.deriv_transaction_id <= 0:
            raise InvalidValue("a Deriv transaction id is positive", field="deriv_transaction_id")
        async with self._uow(staff) as uow:
            tx = await uow.transactions.get_for_update(transaction_id)
            if tx is None:
                raise TransactionNotFound("no such transaction")
            refused = refusal(kind, view_of(tx), evidence)
            if refused is not None:
                raise ActionNotPossible(refused)
            if await uow.review_actions.open_for(tx.id) is not None:
                raise ProposalAlreadyOpen(
                    "this transaction already has an open proposal: approve or reject it"
                )
            proposal = Proposal(
                id=new_uuid7(),
                transaction_id=tx.id,
                transaction_version=tx.version,
                kind=kind,
                status=ProposalStatus.PROPOSED,
                reason=why,
                proposed_by=staff,
                proposed_at=uow.clock.now(),
                deriv_transaction_id=evidence.deriv_transaction_id,
                mpesa_receipt=evidence.mpesa_receipt,
            )
            await uow.review_actions.add(proposal)
            uow.audit(
                action="review.proposed",
                subject_type=SUBJECT,
                subject_id=str(tx.id),
                details=self._details(proposal, tx_status=tx.status.value),
            )
            await uow.commit()
        return proposal

    # --- approve ----------------------------------------------------------------------------

    async def approve(self, *, staff: str, action_id: uuid.UUID) -> Proposal:
        async with self._uow(staff) as uow:
            proposal = await self._open(uow, action_id)
            if proposal.proposed_by == staff:
                uow.audit(
                    action="review.approval_refused",
                    subject_type=SUBJECT,
                    subject_id=str(proposal.transaction_id),
                    details={**self._details(proposal), "refused_approver": staff, "why": "four-eyes"},
                )
                await uow.commit()
                raise FourEyesRequired("a proposal is approved by someone other than its proposer")
            tx = await uow.transactions.get(proposal.transaction_id)
            assert tx is not None  # a proposal references its transaction (foreign key)
            asked_at = uow.clock.now()

        checked = await self._check_evidence(tx, proposal, asked_at)
        line, denial = checked.line, checked.denial
        asked = tx

        async with self._uow(staff) as uow:
            tx = await uow.transactions.get_for_update(proposal.transaction_id)
            assert tx is not None
            proposal = await self._open(uow, action_id, for_update=True)
            now = uow.clock.now()
            why = denial
            changed = tx.version != proposal.transaction_version
            if why is None and changed and not _confirmed_by_the_check(asked, tx, proposal):
                why = "the transaction changed after the proposal: propose again"
            if why is None:
                why = refusal(proposal.kind, view_of(tx), _evidence(proposal))
            if why is not None:
                refused = dataclasses.replace(
                    proposal,
                    status=ProposalStatus.REFUSED,
                    decided_by=staff,
                    decided_at=now,
                    outcome=why[:MAX_REASON],
                )
                await uow.review_actions.decide(refused)
                uow.audit(
                    action="review.refused",
                    subject_type=SUBJECT,
                    subject_id=str(tx.id),
                    details={
                        **self._details(refused),
                        "provider_line": _line_details(line),
                        "provider_answer": checked.answer,
                    },
                )
                await uow.commit()
                if denial is not None:
                    raise EvidenceDenied(f"the provider denies the evidence: {denial}")
                raise ActionNotPossible(why)
            outcome = await self._execute(uow, tx, proposal, checked)
            executed = dataclasses.replace(
                proposal, status=ProposalStatus.EXECUTED, decided_by=staff, decided_at=now, outcome=outcome
            )
            await uow.review_actions.decide(executed)
            await uow.transactions.save(tx)
            uow.audit(
                action="review.approved",
                subject_type=SUBJECT,
                subject_id=str(tx.id),
                details={
                    **self._details(executed),
                    "provider_line": _line_details(line),
                    "provider_answer": checked.answer,
                    "tx_status": tx.status.value,
                },
            )
            await uow.commit()
        if checked.push is not None:
            await self._take_in_parked(tx.id, checked.push.checkout_request_id)
        return executed

    async def _take_in_parked(self, tx_id: TransactionId, checkout_request_id: str) -> None:
        """The parked callback, now that its push holds its CheckoutRequestID. Left parked (for the
        callback queue) if this fails: the saga's STK Query settles the deposit without it."""
        assert self._mpesa is not None
        try:
            await self._mpesa.take_in_parked(checkout_request_id)
        except Exception as error:
            log.warning(
                "review.parked_callback_not_taken_in",
                transaction_id=str(tx_id),
                error_type=type(error).__name__,
            )

    async def _check_evidence(self, tx: Transaction, proposal: Proposal, now: datetime) -> Checked:
        """Ask the provider (no lock held)."""
        kind, deposit = proposal.kind, tx.type is TransactionType.DEPOSIT
        if kind is ActionKind.FAIL and not deposit:
            return await self._check_debit_not_executed(tx)
        request = tx.mpesa_request
        if deposit and request is None and kind in (ActionKind.FAIL, ActionKind.RETRY):
            return await self._check_lost_push(tx, kind, now)
        if kind is ActionKind.FAIL and request is not None and request.status == EvidenceStatus.SENT:
            return await self._check_not_paid(tx)
        if kind is ActionKind.RESOLVE_COMPLETED and deposit:
            return await self._check_transfer(tx, proposal)
        if kind is ActionKind.RESOLVE_COMPLETED:
            return await self._check_receipt(tx, proposal)
        return Checked()

    async def _check_debit_not_executed(self, tx: Transaction) -> Checked:
        if tx.deriv_withdrawal is None or tx.deriv_withdrawal.status != EvidenceStatus.SENT:
            return Checked()
        try:
            executed = await self._lookups.withdrawal_executed(withdrawal_id=str(tx.id), amount=tx.amount)
        except (CallUnavailable, CallOutcomeUnknown, CallDeferred) as error:
            raise EvidenceUnavailable(
                f"Deriv cannot say now whether the debit executed ({error}); nothing changed"
            ) from None
        if executed is not None:
            return Checked(denial=f"Deriv executed the debit (transaction {executed}): money moved")
        return Checked()

    async def _check_not_paid(self, tx: Transaction) -> Checked:
        """A deposit with no M-Pesa answer: only STK Query saying "not paid" lets it fail."""
        request = tx.mpesa_request
        assert request is not None
        if self._mpesa is None:
            raise EvidenceUnavailable("M-Pesa cannot be asked from here; nothing changed")
        outcome = await self._mpesa.stk_outcome(
            checkout_request_id=request.checkout_request_id, merchant_request_id=request.merchant_request_id
        )
        answer: JSONValue = {
            "api": "stk_query",
            "answer": outcome.answer.value,
            "result_code": outcome.result_code,
            "detail": outcome.detail,
        }
        if outcome.answer is StkAnswer.OPEN:
            raise EvidenceUnavailable(
                f"M-Pesa has not settled the payment yet ({outcome.detail}); "
                "nothing changed, approve again later"
            )
        if outcome.answer is StkAnswer.PAID:
            why = "STK Query says the customer paid: money moved (retry the deposit so the saga credits it)"
            return Checked(denial=why, answer=answer)
        return Checked(answer=answer, stk=outcome)

    async def _check_lost_push(self, tx: Transaction, kind: ActionKind, now: datetime) -> Checked:
        """A push whose answer was lost: M-Pesa's list of payments under its AccountReference and the
        callbacks parked for want of its CheckoutRequestID decide (application.payments.lost_push)."""
        if self._mpesa is None:
            raise EvidenceUnavailable("M-Pesa cannot be asked from here; nothing changed")
        # The push went before the deposit went to review (its call's grace ran out first).
        payable_until = tx.updated_at + self._lost_push_wait
        if kind is ActionKind.FAIL and now < payable_until:
            raise EvidenceUnavailable(
                f"the lost push may still be paid and listed by M-Pesa until {payable_until:%H:%M:%S} "
                "UTC; nothing changed, approve again after it"
            )
        try:
            records = await self._mpesa.lost_push_records(since=tx.created_at - CLOCK_MARGIN, until=now)
        except CallUnavailable as error:
            raise EvidenceUnavailable(
                f"M-Pesa's list of payments cannot be read now ({error}); "
                "nothing changed, approve again later"
            ) from None
        reference = push_reference(tx.id)
        if kind is ActionKind.FAIL:
            judged = judge_fail(records, reference=reference, amount=tx.amount, phone=tx.phone.value)
        else:
            judged = judge_retry(records, reference=reference, amount=tx.amount)
        listed = judged.listed
        if listed is not None and now >= payable_until:
            # No callback came in the push's time: M-Pesa's own list is the evidence, on a receipt
            # nothing else holds (a paybill payment under the same reference would be one).
            if await self._mpesa.receipt_held(listed.receipt):
                judged = Judgement(denial=f"{listed.receipt} is already another payment's")
            else:
                judged = Judgement(listed=listed)
        elif judged.wait is not None and listed is not None:
            raise EvidenceUnavailable(
                f"{judged.wait}; nothing changed, approve again later (after {payable_until:%H:%M:%S} "
                "UTC it is taken in on M-Pesa's list alone)"
            )
        if judged.wait is not None:
            raise EvidenceUnavailable(f"{judged.wait}; nothing changed, approve again later")
        answer: JSONValue = {
            "api": "pull_transactions",
            "reference": reference,
            "listed_under_reference": [p.receipt for p in records.under(reference)],
            "checkout_request_id": judged.found.checkout_request_id if judged.found else None,
            "taken_in_as_listed": judged.listed.receipt if judged.listed else None,
        }
        return Checked(denial=judged.denial, answer=answer, push=judged.found, listed=judged.listed)

    async def _check_transfer(self, tx: Transaction, proposal: Proposal) -> Checked:
        try:
            if tx.deriv_login_id.is_rest:
                # the REST API has no agent statement to search: Deriv's own record of our request id
                assert tx.converted_amount is not None
                line = await self._lookups.transfer_executed(
                    transfer_id=str(tx.id), loginid=tx.deriv_login_id, amount=tx.converted_amount
                )
            else:
                line = await self._deriv.find_line(str(tx.id), tx.created_at)
        except (CallUnavailable, CallOutcomeUnknown, NotExecuted, CallRefused, CallDeferred) as error:
            raise EvidenceUnavailable(
                f"Deriv's records cannot be read now ({error}); nothing changed, approve again later"
            ) from None
        return Checked(line=line, denial=deriv_denial(tx, proposal.deriv_transaction_id, line))

    async def _check_receipt(self, tx: Transaction, proposal: Proposal) -> Checked:
        payout = tx.mpesa_disbursement
        assert payout is not None and proposal.mpesa_receipt is not None  # the rules require both
        if payout.status == EvidenceStatus.CONFIRMED:
            if payout.transaction_receipt == proposal.mpesa_receipt:
                return Checked(answer={"api": "transaction_status", "receipt": payout.transaction_receipt})
            held = payout.transaction_receipt
            offered = proposal.mpesa_receipt
            return Checked(denial=f"M-Pesa confirmed this payout with receipt {held}, not {offered}")
        if self._mpesa is None:
            raise EvidenceUnavailable("M-Pesa cannot be asked from here; nothing changed")
        check = await self._mpesa.check_receipt(
            originator_conversation_id=payout.originator_conversation_id, receipt=proposal.mpesa_receipt
        )
        answer: JSONValue = {
            "api": "transaction_status",
            "confirmed": check.confirmed,
            "detail": check.detail,
        }
        if check.confirmed is None:
            raise EvidenceUnavailable(
                f"M-Pesa has not answered Transaction Status yet ({check.detail}); "
                "nothing changed, approve again later"
            )
        if not check.confirmed:
            return Checked(denial=check.detail, answer=answer)
        return Checked(answer=answer)

    async def _execute(
        self, uow: ReviewUnitOfWork, tx: Transaction, proposal: Proposal, checked: Checked
    ) -> str:
        now = uow.clock.now()
        if proposal.kind is ActionKind.RESOLVE_COMPLETED and tx.type is TransactionType.WITHDRAWAL:
            payout = tx.mpesa_disbursement
            if (
                payout is None
                or payout.status != EvidenceStatus.CONFIRMED
                or payout.transaction_receipt != proposal.mpesa_receipt
            ):
                raise ActionNotPossible("M-Pesa's confirmation of the payout is not recorded: approve again")
            # What the saga's COMPLETE_WITHDRAWAL does: the payout was booked when it was reserved.
            tx.mpesa_disbursement_completed(
                transaction_receipt=payout.transaction_receipt,
                result_desc=payout.result_desc,
                raw_result=payout.raw_result,
                now=now,
            )
            return f"completed on M-Pesa receipt {payout.transaction_receipt} (Transaction Status)"
        if proposal.kind is ActionKind.RESOLVE_COMPLETED:
            transfer = tx.deriv_transfer
            if transfer is not None and transfer.status == EvidenceStatus.FAILED:
                # Deriv's refusal gave the reservation back: the proven transfer takes it again.
                await book(uow, await bookings.deposit_transfer_proven(uow.ledger, tx))
            tx.complete_after_review(
                f"review {proposal.id}: {proposal.reason}",
                deriv_transaction_id=proposal.deriv_transaction_id,
                now=now,
            )
            return "completed on the provider's confirmation"
        if proposal.kind is ActionKind.REFUND:
            # The intent first: reversing postings, the B2C reservation and the refund's one id,
            # committed with the approval. The saga pays it (and only resolves it after a crash).
            for posting in await bookings.deposit_refund(uow.ledger, tx):
                await book(uow, posting)
            tx.refund_requested(originator_conversation_id=refund_originator_conversation_id(tx.id), now=now)
            return "refund approved: the B2C refund is on its way"
        if proposal.kind is ActionKind.FAIL and checked.stk is not None:
            # STK Query proved the push unpaid: recorded as the payment's evidence, as a callback would be.
            tx.mpesa_failed(
                result_code=checked.stk.result_code or 1,
                result_desc=f"STK Query in review: {checked.stk.detail}"[:255],
                raw_callback=None,
                now=now,
            )
            return "failed: STK Query says the customer was not charged"
        if proposal.kind is ActionKind.FAIL:
            tx.fail_after_review(f"failed in review: {proposal.reason}", now=now)
            return "failed: no money moved"
        if proposal.kind is ActionKind.RETRY:
            if tx.type is TransactionType.DEPOSIT and tx.mpesa_request is None and checked.listed:
                receipt = checked.listed.receipt
                tx.lost_push_paid_as_listed(receipt=receipt, now=now)
                tx.resume_after_review(Step.STK_PUSH.value, now=now)
                return f"retry approved: {receipt}, listed by M-Pesa under the push's reference, is taken in"
            if tx.type is TransactionType.DEPOSIT and tx.mpesa_request is None:
                found = checked.push
                if found is None:
                    raise ActionNotPossible("M-Pesa's records gave the push no answer: approve again")
                tx.lost_push_answer_found(
                    checkout_request_id=found.checkout_request_id,
                    merchant_request_id=found.merchant_request_id,
                    now=now,
                )
            retry = retry_of(view_of(tx))
            assert retry is not None  # the rules were asked under this lock
            detail = f"retry approved in review {proposal.id}"
            if not retry.back_to_saga:
                # The refund's one send, armed again (same OriginatorConversationID), and its
                # Transaction Status attempts started over. The saga does the rest.
                await uow.saga_steps.defer(tx.id, Step.REFUND_B2C.value, now=now, until=now, detail=detail)
                await uow.saga_steps.reset(tx.id, Step.REFUND_B2C_QUERY.value, now=now, detail=detail)
                tx.retry_approved(Step.REFUND_B2C.value, now=now)
                return "retry approved: the saga sends the refund again under its one id"
            for step in retry.reset:
                await uow.saga_steps.reset(tx.id, step, now=now, detail=detail)
            tx.resume_after_review(retry.reset[0], now=now)
            return f"retry approved: the saga will {retry.what}"
        raise ActionNotPossible(f"{proposal.kind.value} is not available yet")  # rules refuse it first

    # --- reject -----------------------------------------------------------------------------

    async def reveal_phone(self, *, staff: str, transaction_id: TransactionId, reason: str) -> str:
        """The customer's number, unmasked for a person who must call them: who asked and why is an
        audit record committed before the number is given."""
        why = _clean_reason(reason)
        async with self._uow(staff) as uow:
            tx = await uow.transactions.get(transaction_id)
            if tx is None:
                raise TransactionNotFound("no such transaction")
            uow.audit(
                action="ops.pii_revealed",
                subject_type=SUBJECT,
                subject_id=str(tx.id),
                details={"field": "phone", "revealed_to": staff, "reason": why},
            )
            await uow.commit()
        return tx.phone.value

    async def reject(self, *, staff: str, action_id: uuid.UUID, reason: str) -> Proposal:
        why = _clean_reason(reason)
        async with self._uow(staff) as uow:
            proposal = await self._open(uow, action_id, for_update=True)
            if proposal.proposed_by == staff:
                uow.audit(
                    action="review.rejection_refused",
                    subject_type=SUBJECT,
                    subject_id=str(proposal.transaction_id),
                    details={**self._details(proposal), "refused_approver": staff, "why": "four-eyes"},
                )
                await uow.commit()
                raise FourEyesRequired("a proposal is rejected by someone other than its proposer")
            rejected = dataclasses.replace(
                proposal,
                status=ProposalStatus.REJECTED,
                decided_by=staff,
                decided_at=uow.clock.now(),
                outcome=why,
            )
            await uow.review_actions.decide(rejected)
            uow.audit(
                action="review.rejected",
                subject_type=SUBJECT,
                subject_id=str(proposal.transaction_id),
                details=self._details(rejected),
            )
            await uow.commit()
        return rejected

    # --- both -------------------------------------------------------------------------------

    async def _open(
        self, uow: ReviewUnitOfWork, action_id: uuid.UUID, *, for_update: bool = False
    ) -> Proposal:
        proposal = await uow.review_actions.get(action_id, for_update=for_update)
        if proposal is None:
            raise ReviewActionNotFound("no such review action")
        if proposal.status is not ProposalStatus.PROPOSED:
            raise ProposalNotOpen(f"this proposal is already {proposal.status.value}")
        return proposal

    @staticmethod
    def _details(p: Proposal, **extra: JSONValue) -> dict[str, JSONValue]:
        details: dict[str, JSONValue] = {
            "action_id": str(p.id),
            "kind": p.kind.value,
            "status": p.status.value,
            "reason": p.reason,
            "proposed_by": p.proposed_by,
            "approved_by": p.decided_by,
            "deriv_transaction_id": p.deriv_transaction_id,
            "mpesa_receipt": p.mpesa_receipt,
            "transaction_version": p.transaction_version,
        }
        if p.outcome is not None:
            details["outcome"] = p.outcome
        details.update(extra)
        return details

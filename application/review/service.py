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
from typing import Any

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
    Proposal,
    ReviewUnitOfWork,
    StatementLine,
)
from application.review.rules import ActionKind, Evidence, ProposalStatus, ReviewView, refusal
from domain.payments.attachments import EvidenceStatus
from domain.payments.status import TransactionType
from domain.payments.transaction import Transaction
from domain.shared.errors import InvalidValue
from domain.shared.ids import TransactionId, new_uuid7
from domain.shared.json_value import JSONValue

MAX_REASON = 255


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
    if line.to_loginid and line.to_loginid.upper() != tx.deriv_loginid.value.upper():
        return f"Deriv's statement shows the transfer to {line.to_loginid}, not {tx.deriv_loginid.value}"
    return None


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


class ReviewService:
    def __init__(
        self,
        *,
        unit_of_work: Callable[[str], ReviewUnitOfWork],
        deriv_statement: DerivStatement,
        deriv_lookups: DerivLookups,
    ) -> None:
        self._uow = unit_of_work  # actor -> unit of work auditing as that actor
        self._deriv = deriv_statement
        self._lookups = deriv_lookups

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

        line, denial = await self._check_evidence(tx, proposal)

        async with self._uow(staff) as uow:
            tx = await uow.transactions.get_for_update(proposal.transaction_id)
            assert tx is not None
            proposal = await self._open(uow, action_id, for_update=True)
            now = uow.clock.now()
            why = denial
            if why is None and tx.version != proposal.transaction_version:
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
                    details={**self._details(refused), "provider_line": _line_details(line)},
                )
                await uow.commit()
                if denial is not None:
                    raise EvidenceDenied(f"the provider denies the evidence: {denial}")
                raise ActionNotPossible(why)
            outcome = await self._execute(uow, tx, proposal)
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
                    "tx_status": tx.status.value,
                },
            )
            await uow.commit()
        return executed

    async def _check_evidence(
        self, tx: Transaction, proposal: Proposal
    ) -> tuple[StatementLine | None, str | None]:
        """Ask the provider (no lock held). (line, why denied)."""
        if (
            proposal.kind is ActionKind.FAIL
            and tx.type is TransactionType.WITHDRAWAL
            and tx.deriv_withdrawal is not None
            and tx.deriv_withdrawal.status == EvidenceStatus.SENT
        ):
            try:
                executed = await self._lookups.withdrawal_executed(withdrawal_id=str(tx.id), amount=tx.amount)
            except (CallUnavailable, CallOutcomeUnknown, CallDeferred) as error:
                raise EvidenceUnavailable(
                    f"Deriv cannot say now whether the debit executed ({error}); nothing changed"
                ) from None
            if executed is not None:
                return None, f"Deriv executed the debit (transaction {executed}): money moved"
            return None, None
        if proposal.kind is not ActionKind.RESOLVE_COMPLETED or tx.type is not TransactionType.DEPOSIT:
            return None, None
        try:
            line = await self._deriv.find_line(str(tx.id), tx.created_at)
        except (CallUnavailable, CallOutcomeUnknown, NotExecuted, CallRefused) as error:
            raise EvidenceUnavailable(
                f"Deriv's statement cannot be read now ({error}); nothing changed, approve again later"
            ) from None
        return line, deriv_denial(tx, proposal.deriv_transaction_id, line)

    async def _execute(self, uow: ReviewUnitOfWork, tx: Transaction, proposal: Proposal) -> str:
        now = uow.clock.now()
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
        if proposal.kind is ActionKind.FAIL:
            tx.fail_after_review(f"failed in review: {proposal.reason}", now=now)
            return "failed: no money moved"
        if proposal.kind is ActionKind.RETRY:
            # The refund's one send, armed again (same OriginatorConversationID), and its
            # Transaction Status attempts started over. The saga does the rest.
            detail = f"retry approved in review {proposal.id}"
            await uow.saga_steps.defer(tx.id, Step.REFUND_B2C.value, now=now, until=now, detail=detail)
            await uow.saga_steps.reset(tx.id, Step.REFUND_B2C_QUERY.value, now=now, detail=detail)
            tx.retry_approved(Step.REFUND_B2C.value, now=now)
            return "retry approved: the saga sends the refund again under its one id"
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

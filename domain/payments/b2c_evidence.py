"""The rules of a payout's B2C evidence (the MpesaDisbursement row): what a B2C result, a queue
timeout and a Transaction Status answer may change, and when they prove nothing and go to a person.

The one place these rules live, as stk_evidence.py is for deposits. The Transaction aggregate applies
them (its version grows and it raises the typed events); the callback endpoint only parses and
authenticates, and the repository only stores what the aggregate holds, so `mpesa_disbursements` has
one writer. A deposit's refund is a disbursement too, judged the same way.

Evidence states (MpesaDisbursement.status):
  SENT|UNKNOWN -> SUCCEEDED (result: paid) -> CONFIRMED (Transaction Status agrees) | REVIEW
  SENT|UNKNOWN -> FAILED (result, or Transaction Status: a final failure)
  SENT -> UNKNOWN (queue timeout: the payout may or may not have happened)
  SENT|UNKNOWN|SUCCEEDED -> CONFIRMED (Transaction Status: Completed)
An answer trusts nothing it is sent: a different ConversationID, amount or receipt, a receipt missing
or not in the receipt format, a second, different result, or a status answer about another payout
changes nothing and is kept for a person (EvidenceProblem).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.payments.attachments import EvidenceStatus, MpesaDisbursement
from domain.payments.paybill import visible_digits_agree
from domain.payments.stk_evidence import MAX_DESC, RECEIPT, EvidenceProblem
from domain.wallet.money import Currency

E = EvidenceStatus
# The saga stores this instead of a ConversationID when Daraja refused a re-sent B2C as a duplicate
# (application.payments.saga): it is no id of Daraja's, so nothing is compared with it.
NO_CONVERSATION_ID = "DUPLICATE-OCID"


class PayoutEffect(StrEnum):
    SUCCESS_RECORDED = "SUCCESS_RECORDED"  # result: SENT|UNKNOWN -> SUCCEEDED, awaits Transaction Status
    FAILURE_RECORDED = "FAILURE_RECORDED"  # result or status answer: SENT|UNKNOWN -> FAILED
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"  # queue timeout: SENT -> UNKNOWN
    CONFIRMED = "CONFIRMED"  # status answer: SENT|UNKNOWN|SUCCEEDED -> CONFIRMED (exactly one payout)
    CONFIRMED_AGAIN = "CONFIRMED_AGAIN"  # status answer: Completed, same receipt, already CONFIRMED
    CONTRADICTED = "CONTRADICTED"  # status answer disagrees with a success: -> REVIEW, kept for a person
    DUPLICATE = "DUPLICATE"  # the same evidence again: nothing changes
    NOTHING_SETTLED = "NOTHING_SETTLED"  # a status answer that settles nothing (in progress, ...)
    REVIEW = "REVIEW"  # nothing changes; kept for a person (`problem`)


@dataclass(frozen=True, slots=True)
class PayoutJudgement:
    effect: PayoutEffect
    problem: EvidenceProblem | None = None
    detail: str = ""
    conflict: bool = False  # a second, different result for a settled payout

    @property
    def kept_for_review(self) -> bool:
        return self.problem is not None


def _review(problem: EvidenceProblem, detail: str, *, conflict: bool = False) -> PayoutJudgement:
    return PayoutJudgement(PayoutEffect.REVIEW, problem, detail, conflict)


def held_conversation_id(d: MpesaDisbursement) -> str | None:
    """The ConversationID Daraja gave this payout, if any (the duplicate marker is none)."""
    held = d.conversation_id
    return None if held in (None, "", NO_CONVERSATION_ID) else held


def _amount_agrees(d: MpesaDisbursement, amount_cents: int | None) -> bool:
    return d.amount.currency is Currency.KES and amount_cents == d.amount.amount_minor


# --- B2C result -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class B2CResultEvidence:
    """A B2C result as the endpoint parsed it (authenticated, not yet believed)."""

    originator_conversation_id: str
    conversation_id: str | None
    paid: bool  # ResultCode "0"
    result_code: int | None  # None: a code no INTEGER holds (kept in result_desc)
    result_code_shown: str  # the ResultCode as sent, for a person
    result_desc: str
    amount_cents: int | None  # None: absent or not a whole number of cents
    amount_shown: str  # the amount as sent, for a person
    receipt: str | None  # TransactionReceipt (on a success only)
    raw: str


def judge_b2c_result(d: MpesaDisbursement, r: B2CResultEvidence) -> PayoutJudgement:
    """What this result proves about the payout we hold (pure; nothing changes here)."""
    held = held_conversation_id(d)
    if held and r.conversation_id and held != r.conversation_id:
        return _review(EvidenceProblem.CONVERSATION_ID_MISMATCH, "ConversationID differs")
    if r.paid:
        if not _amount_agrees(d, r.amount_cents):
            return _review(
                EvidenceProblem.AMOUNT_MISMATCH,
                f"result amount {r.amount_shown} vs stored {d.amount.amount_minor} cents",
            )
        if not r.receipt:
            return _review(EvidenceProblem.RECEIPT_MISSING, "success without TransactionReceipt")
        if not RECEIPT.match(r.receipt):
            return _review(EvidenceProblem.RECEIPT_INVALID, "TransactionReceipt has not the receipt format")
    if d.status in (E.SENT, E.UNKNOWN):
        return PayoutJudgement(PayoutEffect.SUCCESS_RECORDED if r.paid else PayoutEffect.FAILURE_RECORDED)
    if r.paid and d.status in (E.SUCCEEDED, E.CONFIRMED) and d.transaction_receipt == r.receipt:
        return PayoutJudgement(PayoutEffect.DUPLICATE)
    if not r.paid and d.status == E.FAILED and d.result_code == r.result_code:
        return PayoutJudgement(PayoutEffect.DUPLICATE)
    return _review(
        EvidenceProblem.CONFLICTING_RESULT,
        f"ResultCode {r.result_code_shown} for a disbursement already {d.status}",
        conflict=True,
    )


def apply_b2c_result(
    d: MpesaDisbursement, r: B2CResultEvidence, effect: PayoutEffect, *, now: datetime
) -> MpesaDisbursement:
    """The payout after a result judged `effect` (the same payout when it changes nothing)."""
    if effect not in (PayoutEffect.SUCCESS_RECORDED, PayoutEffect.FAILURE_RECORDED):
        return d
    paid = effect is PayoutEffect.SUCCESS_RECORDED
    # Daraja's id once it names one (also in place of the duplicate marker)
    named = d.conversation_id if held_conversation_id(d) else r.conversation_id or d.conversation_id
    return dataclasses.replace(
        d,
        status=E.SUCCEEDED if paid else E.FAILED,
        result_code=r.result_code,
        result_desc=r.result_desc[:MAX_DESC],
        raw_result=r.raw,
        conversation_id=named,
        transaction_receipt=r.receipt if paid else d.transaction_receipt,
        updated_at=now,
    )


# --- queue timeout ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class B2CTimeoutEvidence:
    """A B2C queue timeout: not a failure, the payout may or may not have happened."""

    originator_conversation_id: str
    conversation_id: str | None
    result_code: int | None
    result_desc: str
    raw: str


def judge_b2c_timeout(d: MpesaDisbursement, t: B2CTimeoutEvidence) -> PayoutJudgement:
    held = held_conversation_id(d)
    if held and t.conversation_id and held != t.conversation_id:
        return _review(EvidenceProblem.CONVERSATION_ID_MISMATCH, "ConversationID differs")
    if d.status != E.SENT:
        return PayoutJudgement(PayoutEffect.DUPLICATE)  # a late timeout after the result, or a second
    return PayoutJudgement(PayoutEffect.OUTCOME_UNKNOWN)


def apply_b2c_timeout(
    d: MpesaDisbursement, t: B2CTimeoutEvidence, effect: PayoutEffect, *, now: datetime
) -> MpesaDisbursement:
    if effect is not PayoutEffect.OUTCOME_UNKNOWN:
        return d
    return dataclasses.replace(
        d,
        status=E.UNKNOWN,
        result_code=t.result_code,
        result_desc=t.result_desc[:MAX_DESC],
        raw_result=t.raw,
        updated_at=now,
    )


# --- Transaction Status ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusAnswer:
    """A Transaction Status answer about one of our payouts (the endpoint found which one: by the
    OriginatorConversationID it names, or the Occasion we sent)."""

    originator_conversation_id: str  # the payout it is about
    succeeded: bool  # the query itself (ResultCode "0")
    completed: bool  # TransactionStatus "Completed"
    final_failure: bool  # Cancelled / Declined / Expired / Failed
    transaction_status: str | None
    failure_desc: str  # what a failed query says, as kept for a person
    named_originator_conversation_id: str | None  # as the parameters name it (None: not named)
    subject_conversation_id: str | None  # the subject's ConversationID (not the query's own)
    receipt: str | None
    amount_cents: int | None
    amount_shown: str
    party: str | None  # the customer as the answer shows them (masked or whole)
    raw: str


def about_this_payout(d: MpesaDisbursement, a: StatusAnswer) -> bool:
    """A final answer is about this payout: its customer, where shown, is the payee (visible digits);
    and it names our OriginatorConversationID, the ConversationID or receipt we hold, or (naming
    none, e.g. asked about a receipt) shows the customer at all."""
    if a.party is not None and not visible_digits_agree(a.party, d.phone.value):
        return False
    held = held_conversation_id(d)
    return (
        a.named_originator_conversation_id == d.originator_conversation_id
        or (held is not None and a.subject_conversation_id == held)
        or (d.transaction_receipt is not None and d.transaction_receipt == a.receipt)
        or a.party is not None
    )


def judge_status_answer(d: MpesaDisbursement, a: StatusAnswer) -> PayoutJudgement:
    """What a Transaction Status answer proves about the payout we hold (pure)."""
    if not a.succeeded and a.named_originator_conversation_id is None:
        # The query itself failed (e.g. "no such transaction" for a receipt an operator offered):
        # it settles nothing, and is kept as the provider's word under our id.
        return PayoutJudgement(PayoutEffect.NOTHING_SETTLED, EvidenceProblem.STATUS_FAILED, a.failure_desc)
    # Whatever it says, an answer naming another ConversationID or receipt than the ones we hold is
    # about another payment: it settles nothing and changes nothing.
    held = held_conversation_id(d)
    if held and a.subject_conversation_id and held != a.subject_conversation_id:
        return _review(EvidenceProblem.FOREIGN_ANSWER, "status result names another ConversationID")
    if d.transaction_receipt and a.receipt and d.transaction_receipt != a.receipt:
        return _review(EvidenceProblem.FOREIGN_ANSWER, "status result names another receipt")
    if (a.completed or a.final_failure) and not about_this_payout(d, a):
        # Neither id names ours (an answer about a receipt an operator typed): the amount alone may
        # be another payout's; the customer it names must be ours.
        return _review(
            EvidenceProblem.PHONE_MISMATCH,
            f"status result names no id of ours and party {a.party or 'none'} is not the payee",
        )
    if a.completed:
        return _judge_completed(d, a)
    if a.final_failure and d.status in (E.SENT, E.UNKNOWN):
        return PayoutJudgement(PayoutEffect.FAILURE_RECORDED)
    if a.final_failure and d.status in (E.SUCCEEDED, E.CONFIRMED):
        return PayoutJudgement(
            PayoutEffect.CONTRADICTED,
            EvidenceProblem.CONFIRMATION_MISMATCH,
            f"status {a.transaction_status} after success",
        )
    return PayoutJudgement(PayoutEffect.NOTHING_SETTLED)


def _judge_completed(d: MpesaDisbursement, a: StatusAnswer) -> PayoutJudgement:
    if not _amount_agrees(d, a.amount_cents):
        return _review(EvidenceProblem.AMOUNT_MISMATCH, f"status amount {a.amount_shown} vs stored")
    if not a.receipt or not RECEIPT.match(a.receipt):
        return _review(EvidenceProblem.RECEIPT_INVALID, "status result without a valid ReceiptNo")
    if d.status == E.CONFIRMED:
        if d.transaction_receipt == a.receipt:
            return PayoutJudgement(PayoutEffect.CONFIRMED_AGAIN)
        return _review(EvidenceProblem.CONFIRMATION_MISMATCH, "a second receipt for one payout")
    if d.status == E.SUCCEEDED and d.transaction_receipt != a.receipt:
        return PayoutJudgement(
            PayoutEffect.CONTRADICTED,
            EvidenceProblem.CONFIRMATION_MISMATCH,
            "status receipt differs from the result's",
        )
    if d.status not in (E.SENT, E.UNKNOWN, E.SUCCEEDED):
        return _review(
            EvidenceProblem.CONFIRMATION_MISMATCH, f"Completed for a disbursement {d.status}", conflict=True
        )
    return PayoutJudgement(PayoutEffect.CONFIRMED)


def apply_status_answer(
    d: MpesaDisbursement, a: StatusAnswer, effect: PayoutEffect, *, now: datetime
) -> MpesaDisbursement:
    """The payout after a status answer judged `effect` (the same payout when it changes nothing)."""
    if effect is PayoutEffect.CONFIRMED:
        if d.status == E.SUCCEEDED:  # the result's code and body stay: they proved it first
            return dataclasses.replace(d, status=E.CONFIRMED, transaction_receipt=a.receipt, updated_at=now)
        return dataclasses.replace(
            d,
            status=E.CONFIRMED,
            transaction_receipt=a.receipt,
            result_code=0,
            raw_result=a.raw,
            updated_at=now,
        )
    if effect is PayoutEffect.FAILURE_RECORDED:
        return dataclasses.replace(
            d,
            status=E.FAILED,
            result_desc=f"status: {a.transaction_status}"[:MAX_DESC],
            raw_result=a.raw,
            updated_at=now,
        )
    if effect is PayoutEffect.CONTRADICTED:
        return dataclasses.replace(d, status=E.REVIEW, updated_at=now)
    return d

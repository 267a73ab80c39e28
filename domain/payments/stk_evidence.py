"""The rules of a deposit's STK evidence (the MpesaRequest row): what an STK callback and an STK
Query answer may change, and when they prove nothing and go to a person instead.

The one place these rules live. The Transaction aggregate applies them (its version grows and it
raises the typed events); the callback endpoint only parses and authenticates, and the repository
only stores what the aggregate holds, so `mpesa_requests` has one writer.

Evidence states (MpesaRequest.status):
  SENT -> SUCCEEDED (callback: paid) -> CONFIRMED (STK Query agrees) | REVIEW (STK Query disagrees)
  SENT -> FAILED (callback or STK Query: not paid)
  SENT -> CONFIRMED (STK Query: paid, no callback came); a late callback then adds the receipt
A callback trusts nothing it is sent: a different MerchantRequestID, amount or phone (a masked phone:
its visible digits), a receipt
missing or not in the receipt format, or a second, different result for a settled request changes
nothing and is kept for a person (EvidenceProblem).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.payments.attachments import EvidenceStatus, MpesaRequest
from domain.payments.paybill import visible_digits_agree
from domain.wallet.money import Money

E = EvidenceStatus
RECEIPT = re.compile(r"^[A-Z0-9]{10}$")
MAX_DESC = 255


class EvidenceProblem(StrEnum):
    """Why an answer from M-Pesa changed nothing and waits for a person (values: the review reasons)."""

    MERCHANT_ID_MISMATCH = "MERCHANT_ID_MISMATCH"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    PHONE_MISMATCH = "PHONE_MISMATCH"
    RECEIPT_MISSING = "RECEIPT_MISSING"
    RECEIPT_INVALID = "RECEIPT_INVALID"
    RECEIPT_REUSED = "RECEIPT_REUSED"
    CONFLICTING_RESULT = "CONFLICTING_RESULT"
    CONFIRMATION_MISMATCH = "CONFIRMATION_MISMATCH"
    # B2C answers (b2c_evidence.py)
    CONVERSATION_ID_MISMATCH = "CONVERSATION_ID_MISMATCH"
    FOREIGN_ANSWER = "FOREIGN_ANSWER"  # a status answer about another payment than ours
    STATUS_FAILED = "STATUS_FAILED"  # the Transaction Status query itself failed: the provider's word


class CallbackEffect(StrEnum):
    SUCCESS_RECORDED = "SUCCESS_RECORDED"  # SENT -> SUCCEEDED: awaits the STK Query, then the credit
    FAILURE_RECORDED = "FAILURE_RECORDED"  # SENT -> FAILED
    RECEIPT_ADDED = "RECEIPT_ADDED"  # confirmed by STK Query alone; the late callback brings the receipt
    DUPLICATE = "DUPLICATE"  # the same evidence again: nothing changes
    REVIEW = "REVIEW"  # nothing changes; kept for a person (`problem`)


@dataclass(frozen=True, slots=True, kw_only=True)
class StkCallbackEvidence:
    """An STK callback as the endpoint parsed it (authenticated, not yet believed)."""

    checkout_request_id: str
    merchant_request_id: str
    result_code: int | None  # None: a code no INTEGER holds (kept in result_desc)
    result_desc: str
    paid: bool  # ResultCode "0"
    amount: Money | None
    receipt: str | None
    phone_digits: str | None  # None when absent or masked
    raw: str
    # A masked PhoneNumber as shown (`0722***000`, `0722000***`, Safaricom since 2026): only its visible
    # digits can be compared. None when whole (then phone_digits) or absent.
    phone_shown: str | None = None


@dataclass(frozen=True, slots=True)
class CallbackJudgement:
    effect: CallbackEffect
    problem: EvidenceProblem | None = None
    detail: str = ""
    conflict: bool = False  # a second, different result for a settled request


def _review(problem: EvidenceProblem, detail: str, *, conflict: bool = False) -> CallbackJudgement:
    return CallbackJudgement(CallbackEffect.REVIEW, problem, detail, conflict)


def judge_stk_callback(request: MpesaRequest, cb: StkCallbackEvidence) -> CallbackJudgement:
    """What this callback proves about the request we hold (pure; nothing changes here)."""
    if request.merchant_request_id != cb.merchant_request_id:
        return _review(EvidenceProblem.MERCHANT_ID_MISMATCH, "MerchantRequestID differs")
    if cb.paid:
        if cb.amount is None or cb.amount != request.amount:
            return _review(
                EvidenceProblem.AMOUNT_MISMATCH,
                f"callback amount {cb.amount} vs stored {request.amount.amount_minor} cents",
            )
        if not cb.receipt:
            return _review(EvidenceProblem.RECEIPT_MISSING, "success without MpesaReceiptNumber")
        if not RECEIPT.match(cb.receipt):
            return _review(EvidenceProblem.RECEIPT_INVALID, "MpesaReceiptNumber has not the receipt format")
        if cb.phone_digits is not None and cb.phone_digits != request.phone.value:
            return _review(EvidenceProblem.PHONE_MISMATCH, "PhoneNumber differs from the stored MSISDN")
        if cb.phone_shown is not None and not visible_digits_agree(cb.phone_shown, request.phone.value):
            return _review(
                EvidenceProblem.PHONE_MISMATCH,
                "masked PhoneNumber's visible digits differ from the stored MSISDN",
            )
    if request.status == E.SENT:
        recorded = CallbackEffect.SUCCESS_RECORDED if cb.paid else CallbackEffect.FAILURE_RECORDED
        return CallbackJudgement(recorded)
    if cb.paid and request.status in (E.SUCCEEDED, E.CONFIRMED):
        if request.mpesa_receipt_number == cb.receipt:
            return CallbackJudgement(CallbackEffect.DUPLICATE)
        if request.mpesa_receipt_number is None and request.status == E.CONFIRMED:
            return CallbackJudgement(CallbackEffect.RECEIPT_ADDED)
    if not cb.paid and request.status == E.FAILED and request.result_code == cb.result_code:
        return CallbackJudgement(CallbackEffect.DUPLICATE)
    code = "0" if cb.paid else str(cb.result_code)
    return _review(
        EvidenceProblem.CONFLICTING_RESULT,
        f"ResultCode {code} for a request already {request.status}",
        conflict=True,
    )


def apply_stk_callback(
    request: MpesaRequest, cb: StkCallbackEvidence, effect: CallbackEffect, *, now: datetime
) -> MpesaRequest:
    """The request after a callback judged `effect` (the same request when it changes nothing)."""
    if effect is CallbackEffect.SUCCESS_RECORDED:
        return dataclasses.replace(
            request,
            status=E.SUCCEEDED,
            result_code=cb.result_code,
            result_desc=cb.result_desc[:MAX_DESC],
            mpesa_receipt_number=cb.receipt,
            raw_callback=cb.raw,
            updated_at=now,
        )
    if effect is CallbackEffect.FAILURE_RECORDED:
        return dataclasses.replace(
            request,
            status=E.FAILED,
            result_code=cb.result_code,
            result_desc=cb.result_desc[:MAX_DESC],
            raw_callback=cb.raw,
            updated_at=now,
        )
    if effect is CallbackEffect.RECEIPT_ADDED:
        return dataclasses.replace(
            request, mpesa_receipt_number=cb.receipt, raw_callback=cb.raw, updated_at=now
        )
    return request


# --- STK Query ------------------------------------------------------------------------------


class QueryEffect(StrEnum):
    CONFIRMED = "CONFIRMED"  # SUCCEEDED|SENT -> CONFIRMED: the one caller that saw it move credits
    FAILED = "FAILED"  # SENT -> FAILED: not paid (no callback came)
    CONTRADICTED = "CONTRADICTED"  # SUCCEEDED -> REVIEW: the callback said paid, the query says not
    SETTLED = "SETTLED"  # already settled: nothing changes


@dataclass(frozen=True, slots=True, kw_only=True)
class StkQueryAnswer:
    """A final STK Query answer (not "being processed"), already checked to be about our request."""

    paid: bool
    result_code: int | None
    result_desc: str
    evidence: str  # what was asked and answered, kept with a contradiction


def judge_stk_query(request: MpesaRequest, answer: StkQueryAnswer) -> QueryEffect:
    if request.status == E.SUCCEEDED:
        return QueryEffect.CONFIRMED if answer.paid else QueryEffect.CONTRADICTED
    if request.status == E.SENT:
        return QueryEffect.CONFIRMED if answer.paid else QueryEffect.FAILED
    return QueryEffect.SETTLED


def apply_stk_query(
    request: MpesaRequest, answer: StkQueryAnswer, effect: QueryEffect, *, now: datetime
) -> MpesaRequest:
    if effect is QueryEffect.CONFIRMED:
        if request.status == E.SUCCEEDED:
            return dataclasses.replace(request, status=E.CONFIRMED, updated_at=now)
        return dataclasses.replace(
            request,
            status=E.CONFIRMED,
            result_code=0,
            result_desc="confirmed by STK Query (no callback)",
            updated_at=now,
        )
    if effect is QueryEffect.FAILED:
        return dataclasses.replace(
            request,
            status=E.FAILED,
            result_code=answer.result_code,
            result_desc=f"STK Query: {answer.result_desc}"[:MAX_DESC],
            updated_at=now,
        )
    if effect is QueryEffect.CONTRADICTED:
        return dataclasses.replace(
            request,
            status=E.REVIEW,
            result_desc=f"callback said paid, STK Query says {answer.result_code}"[:MAX_DESC],
            updated_at=now,
        )
    return request

"""What may be proposed for a transaction under review: one table, pure (no I/O, no clock).

`refusal(kind, view)` says why an action cannot be proposed (or approved) for the transaction as
it stands, or None when it can. Approval asks again under the transaction's row lock, so a
proposal made on a state that has since moved is refused, never executed on the new state.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from domain.payments.attachments import EvidenceStatus as E
from domain.payments.status import TransactionStatus as S
from domain.payments.status import TransactionType as T


class ActionKind(StrEnum):
    RESOLVE_COMPLETED = "RESOLVE_COMPLETED"  # the money went through, on evidence the provider confirms
    REFUND = "REFUND"  # give the customer's KES back by B2C
    FAIL = "FAIL"  # end as failed: provably no money moved
    RETRY = "RETRY"  # run a stuck saga step again


class ProposalStatus(StrEnum):
    PROPOSED = "PROPOSED"
    EXECUTED = "EXECUTED"
    REJECTED = "REJECTED"  # an approver said no
    REFUSED = "REFUSED"  # the provider denied the evidence, or the transaction moved on


# Actions that move money or settle where money is: each needs a second person.
MONEY_MOVING = frozenset(ActionKind)


@dataclass(frozen=True, slots=True)
class ReviewView:
    """What the rules need to know about one transaction (read from storage)."""

    type: T
    status: S
    mpesa_request: str | None = None
    mpesa_disbursement: str | None = None
    deriv_transfer: str | None = None
    deriv_withdrawal: str | None = None
    disbursement_accepted: bool = False  # Daraja gave the B2C a ConversationID


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the proposer offers as proof."""

    deriv_transaction_id: int | None = None
    mpesa_receipt: str | None = None


Rule = Callable[[ReviewView, Evidence], "str | None"]

NOT_UNDER_REVIEW = "the transaction is not under review"


RECEIPT = re.compile(r"[A-Z0-9]{10}")  # an M-Pesa receipt (TransactionID), e.g. UAB1CD2EF3


def _resolve_completed(v: ReviewView, e: Evidence) -> str | None:
    if v.status is not S.NEEDS_REVIEW:
        return NOT_UNDER_REVIEW
    if v.type is T.DEPOSIT:
        if v.mpesa_request != E.CONFIRMED.value:
            return "the customer's M-Pesa payment is not confirmed: a deposit completes only after it"
        if v.deriv_transfer is None:
            return "no Deriv transfer was ever recorded for this deposit"
        if v.mpesa_disbursement is not None:
            return "this deposit's KES refund was requested"
        if e.deriv_transaction_id is None:
            return "a deposit is completed on the Deriv transaction id of its transfer"
        if e.mpesa_receipt:
            return "a deposit is completed on a Deriv transaction id, not an M-Pesa receipt"
        return None
    # A withdrawal completes on the B2C's receipt, which M-Pesa's Transaction Status must confirm
    # (about this payout, its amount and its ConversationID) before anything is booked.
    if v.deriv_withdrawal != E.CONFIRMED.value:
        return "Deriv never debited the user: there is no payout to complete"
    if v.mpesa_disbursement is None:
        return "no B2C payout was ever recorded for this withdrawal"
    if v.mpesa_disbursement not in _PAYOUT_OPEN:
        return f"the B2C payout is {v.mpesa_disbursement}: it cannot be completed on a receipt"
    if e.deriv_transaction_id is not None:
        return "a withdrawal is completed on the M-Pesa receipt of its payout, not a Deriv id"
    if not e.mpesa_receipt:
        return "a withdrawal is completed on the M-Pesa receipt of its payout"
    if not RECEIPT.fullmatch(e.mpesa_receipt):
        return "an M-Pesa receipt is 10 capital letters and digits"
    return None


# A payout whose outcome M-Pesa has not settled for us (or settled paid): a receipt may complete it.
_PAYOUT_OPEN = frozenset({E.SENT.value, E.SUCCEEDED.value, E.UNKNOWN.value, E.CONFIRMED.value})


def _refund(v: ReviewView, e: Evidence) -> str | None:
    if v.status is not S.NEEDS_REVIEW:
        return NOT_UNDER_REVIEW
    if v.type is not T.DEPOSIT:
        return "a withdrawal under review is not refunded by B2C (its USD goes back to Deriv)"
    if v.mpesa_request != E.CONFIRMED.value:
        return "the customer's M-Pesa payment is not confirmed: there is nothing to refund"
    if v.deriv_transfer not in (None, E.FAILED.value):
        return "the Deriv transfer may have reached the user: resolve it, do not refund"
    if v.mpesa_disbursement is not None:
        return "this deposit's refund was already requested"
    if e.deriv_transaction_id is not None or e.mpesa_receipt:
        return "a refund takes no evidence"
    return None


def _fail(v: ReviewView, e: Evidence) -> str | None:
    if v.status is not S.NEEDS_REVIEW:
        return NOT_UNDER_REVIEW
    if e.deriv_transaction_id is not None or e.mpesa_receipt:
        return "failing takes no evidence: the provider's own records are asked"
    if v.type is T.WITHDRAWAL:
        if v.mpesa_disbursement is not None:
            return "a B2C payout was recorded: money may have moved"
        if v.deriv_withdrawal == E.CONFIRMED.value:
            return "Deriv debited the user: money moved"
        return None  # never sent, held back unsent, or sent: then Deriv is asked (resolve-only)
    if v.mpesa_request == E.CONFIRMED.value:
        return "the customer paid by M-Pesa: refund the deposit instead"
    if v.mpesa_request is None:
        # The push's answer was lost: at approval, once the push can no longer be paid, M-Pesa's
        # list must show no payment under its AccountReference (lost_push.judge_fail).
        return None
    if v.deriv_transfer is not None:
        return "a Deriv transfer was recorded"
    if v.mpesa_request == E.SENT.value:
        return None  # no answer yet: STK Query is asked at approval, and must say "not paid"
    if v.mpesa_request != E.FAILED.value:
        return f"M-Pesa's evidence is {v.mpesa_request}: it may have charged the customer"
    return None


@dataclass(frozen=True, slots=True)
class Retry:
    """A stuck step two people may run again: the transaction goes back to OUTCOME_UNKNOWN at the
    step (derived from its evidence), the steps' attempts start over, and the saga resolves it
    again under the same ids (transfer id, CheckoutRequestID, OriginatorConversationID), never new
    ones."""

    what: str
    reset: tuple[str, ...]  # saga_steps whose attempts start over
    back_to_saga: bool = True  # False: the deposit's refund, which the saga runs from NEEDS_REVIEW


_OPEN = (E.SENT.value, E.SUCCEEDED.value, E.UNKNOWN.value)

# (type, guard, retry): the first whose guard holds. Names of saga_steps (decisions.Step) as text:
# rules.py stays free of the saga's module.
RETRYABLE: tuple[tuple[T, Callable[[ReviewView], bool], Retry], ...] = (
    (
        T.DEPOSIT,
        lambda v: v.mpesa_request is None and v.deriv_transfer is None and v.mpesa_disbursement is None,
        # At approval, the callback parked for want of the push's CheckoutRequestID, whose receipt
        # M-Pesa lists under the push's AccountReference, gives it (lost_push.judge_retry).
        Retry("take in the payment M-Pesa lists under the lost push's reference", ("stk_query",)),
    ),
    (
        T.DEPOSIT,
        lambda v: v.mpesa_disbursement == E.SENT.value and not v.disbursement_accepted,
        Retry("send the refund again under its one id", ("refund_b2c", "refund_b2c_query"), False),
    ),
    (
        T.DEPOSIT,
        lambda v: v.mpesa_disbursement is None and v.deriv_transfer in _OPEN,
        Retry("resolve the Deriv transfer again (same transfer id)", ("deriv_transfer",)),
    ),
    (
        T.DEPOSIT,
        lambda v: (
            v.mpesa_disbursement is None
            and v.deriv_transfer is None
            and v.mpesa_request in (E.SENT.value, E.SUCCEEDED.value)
        ),
        Retry("ask STK Query again (same CheckoutRequestID)", ("stk_query",)),
    ),
    (
        T.WITHDRAWAL,
        lambda v: v.deriv_withdrawal == E.CONFIRMED.value and v.mpesa_disbursement in _OPEN,
        Retry("resolve the B2C payout again (same OriginatorConversationID)", ("b2c", "b2c_query")),
    ),
    (
        T.WITHDRAWAL,
        lambda v: v.deriv_withdrawal == E.CONFIRMED.value and v.mpesa_disbursement == E.FAILED.value,
        Retry("send the USD back to Deriv again (same refund transfer id)", ("refund",)),
    ),
    (
        T.WITHDRAWAL,
        lambda v: v.mpesa_disbursement is None and v.deriv_withdrawal == E.SENT.value,
        Retry("resolve the Deriv debit again, resolve-only (never a new debit)", ("deriv_withdrawal",)),
    ),
)


def retry_of(v: ReviewView) -> Retry | None:
    """The stuck step a RETRY would run again, or None."""
    for type_, guard, retry in RETRYABLE:
        if type_ is v.type and guard(v):
            return retry
    return None


def _retry(v: ReviewView, e: Evidence) -> str | None:
    if v.status is not S.NEEDS_REVIEW:
        return NOT_UNDER_REVIEW
    if e.deriv_transaction_id is not None or e.mpesa_receipt:
        return "a retry takes no evidence"
    if retry_of(v) is None:
        return "no step of this transaction can be retried: resolve, refund or fail it instead"
    return None


RULES: Mapping[ActionKind, Rule] = {
    ActionKind.RESOLVE_COMPLETED: _resolve_completed,
    ActionKind.REFUND: _refund,
    ActionKind.FAIL: _fail,
    ActionKind.RETRY: _retry,
}


def refusal(kind: ActionKind, view: ReviewView, evidence: Evidence) -> str | None:
    """Why `kind` cannot be proposed or executed now, or None."""
    return RULES[kind](view, evidence)


def possible(view: ReviewView) -> list[ActionKind]:
    """The kinds that could be proposed with suitable evidence (shown to the operator)."""
    probe = Evidence(deriv_transaction_id=1)
    if view.type is T.WITHDRAWAL:
        probe = Evidence(mpesa_receipt="ABCDE12345")
    return [
        kind
        for kind in ActionKind
        if refusal(kind, view, probe) is None or refusal(kind, view, Evidence()) is None
    ]

"""The review queue's rules (application/review/rules.py) and the domain's completion after review."""

from __future__ import annotations

from datetime import datetime

import pytest

from application.review.ports import StatementLine
from application.review.rules import ActionKind, Evidence, ReviewView, possible, refusal, retry_of
from application.review.service import deriv_denial
from domain.payments.attachments import EvidenceStatus as E
from domain.payments.attachments import MpesaRequest
from domain.payments.errors import IllegalTransition, InvalidEvidence
from domain.payments.events import DerivTransferCompleted, ReviewRetryApproved
from domain.payments.status import TransactionStatus as S
from domain.payments.status import TransactionType as T
from domain.payments.transaction import Transaction

pytestmark = pytest.mark.unit

REFUSED = ReviewView(
    T.DEPOSIT, S.NEEDS_REVIEW, mpesa_request=E.CONFIRMED.value, deriv_transfer=E.FAILED.value
)
DERIV = Evidence(deriv_transaction_id=77)
NR = S.NEEDS_REVIEW
PAYOUT_OPEN = ReviewView(
    T.WITHDRAWAL, S.NEEDS_REVIEW, deriv_withdrawal=E.CONFIRMED.value, mpesa_disbursement=E.UNKNOWN.value
)


def test_a_withdrawal_may_be_resolved_on_an_mpesa_receipt() -> None:
    assert refusal(ActionKind.RESOLVE_COMPLETED, PAYOUT_OPEN, Evidence(mpesa_receipt="QKX1234567")) is None
    assert ActionKind.RESOLVE_COMPLETED in possible(PAYOUT_OPEN)


def test_a_refused_deposit_may_be_resolved_on_a_deriv_transaction_id() -> None:
    assert refusal(ActionKind.RESOLVE_COMPLETED, REFUSED, DERIV) is None
    assert possible(REFUSED) == [ActionKind.RESOLVE_COMPLETED, ActionKind.REFUND]


def test_a_refund_needs_the_payment_received_and_the_transfer_failed() -> None:
    assert refusal(ActionKind.REFUND, REFUSED, Evidence()) is None
    sent = ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, mpesa_request=E.CONFIRMED.value, deriv_transfer=E.SENT.value)
    assert "may have reached" in (refusal(ActionKind.REFUND, sent, Evidence()) or "")
    unpaid = ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, mpesa_request=E.SENT.value)
    assert "nothing to refund" in (refusal(ActionKind.REFUND, unpaid, Evidence()) or "")
    asked = ReviewView(
        T.DEPOSIT,
        S.NEEDS_REVIEW,
        E.CONFIRMED.value,
        mpesa_disbursement=E.SENT.value,
        deriv_transfer=E.FAILED.value,
    )
    assert "already requested" in (refusal(ActionKind.REFUND, asked, Evidence()) or "")
    assert refusal(ActionKind.RESOLVE_COMPLETED, asked, DERIV) is not None
    withdrawal = ReviewView(T.WITHDRAWAL, S.NEEDS_REVIEW)
    assert refusal(ActionKind.REFUND, withdrawal, Evidence()) is not None


@pytest.mark.parametrize(
    ("view", "evidence", "why"),
    [
        (ReviewView(T.DEPOSIT, S.COMPLETED, E.CONFIRMED.value), DERIV, "not under review"),
        (ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, E.SENT.value), DERIV, "not confirmed"),
        (ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, E.CONFIRMED.value), DERIV, "no Deriv transfer"),
        (REFUSED, Evidence(), "Deriv transaction id"),
        (REFUSED, Evidence(deriv_transaction_id=77, mpesa_receipt="QKX1"), "not an M-Pesa receipt"),
        (ReviewView(T.WITHDRAWAL, S.NEEDS_REVIEW), Evidence(mpesa_receipt="QKX1234567"), "never debited"),
        (PAYOUT_OPEN, Evidence(mpesa_receipt="QKX1"), "10 capital letters"),
        (PAYOUT_OPEN, Evidence(), "M-Pesa receipt"),
        (PAYOUT_OPEN, Evidence(deriv_transaction_id=5, mpesa_receipt="QKX1234567"), "not a Deriv id"),
        (
            ReviewView(
                T.WITHDRAWAL,
                S.NEEDS_REVIEW,
                deriv_withdrawal=E.CONFIRMED.value,
                mpesa_disbursement=E.FAILED.value,
            ),
            Evidence(mpesa_receipt="QKX1234567"),
            "cannot be completed on a receipt",
        ),
    ],
)
def test_what_cannot_be_resolved(view: ReviewView, evidence: Evidence, why: str) -> None:
    refused = refusal(ActionKind.RESOLVE_COMPLETED, view, evidence)
    assert refused is not None and why in refused


def _under_review(deposit: Transaction, now: datetime) -> Transaction:
    deposit.stk_push_sent(
        MpesaRequest.sent(
            transaction_id=deposit.id,
            checkout_request_id="ws_CO_1",
            merchant_request_id="m1",
            phone=deposit.phone,
            amount=deposit.amount,
            now=now,
        ),
        now=now,
    )
    deposit.mpesa_confirmed(
        mpesa_receipt_number="QKX1", amount=deposit.amount, raw_callback=None, result_desc=None, now=now
    )
    deposit.deriv_transfer_sent(now=now)
    deposit.deriv_transfer_refused("country", now=now)
    deposit.pull_events()
    return deposit


def test_completion_after_review_confirms_the_transfer(deposit: Transaction, now: datetime) -> None:
    tx = _under_review(deposit, now)
    tx.complete_after_review("proven", deriv_transaction_id=4321, now=now)
    assert tx.status is S.COMPLETED
    assert tx.deriv_transfer is not None
    assert (tx.deriv_transfer.status, tx.deriv_transfer.deriv_transaction_id) == (E.CONFIRMED, 4321)
    assert any(isinstance(e, DerivTransferCompleted) for e in tx.pull_events())
    with pytest.raises(IllegalTransition):
        tx.complete_after_review("again", deriv_transaction_id=4321, now=now)


def test_completion_refuses_a_bad_id(deposit: Transaction, now: datetime) -> None:
    tx = _under_review(deposit, now)
    with pytest.raises(InvalidEvidence):
        tx.complete_after_review("proven", deriv_transaction_id=0, now=now)
    assert tx.status is S.NEEDS_REVIEW


def test_a_statement_line_proves_only_our_transfer(deposit: Transaction, now: datetime) -> None:
    assert deposit.converted_amount is not None
    cents = deposit.converted_amount.amount_minor
    line = StatementLine(9, cents, "USD", "CR90000000", deposit.deriv_login_id.value)
    assert deriv_denial(deposit, 9, line) is None
    assert "no transfer" in (deriv_denial(deposit, 9, None) or "")
    assert "not 8" in (deriv_denial(deposit, 8, line) or "")
    assert "USD" in (deriv_denial(deposit, 9, StatementLine(9, cents + 1, "USD", "CR90000000", "")) or "")
    other = StatementLine(9, cents, "USD", "CR90000000", "CR90000999")
    assert "to CR90000999" in (deriv_denial(deposit, 9, other) or "")


def test_fail_only_where_no_money_can_have_moved() -> None:
    w = T.WITHDRAWAL
    assert refusal(ActionKind.FAIL, ReviewView(w, S.NEEDS_REVIEW), Evidence()) is None
    asked = ReviewView(w, S.NEEDS_REVIEW, deriv_withdrawal=E.SENT.value)
    assert refusal(ActionKind.FAIL, asked, Evidence()) is None  # Deriv is asked at approval
    debited = ReviewView(w, S.NEEDS_REVIEW, deriv_withdrawal=E.CONFIRMED.value)
    assert "money moved" in (refusal(ActionKind.FAIL, debited, Evidence()) or "")
    paying = ReviewView(w, S.NEEDS_REVIEW, deriv_withdrawal=E.FAILED.value, mpesa_disbursement=E.SENT.value)
    assert refusal(ActionKind.FAIL, paying, Evidence()) is not None
    assert "refund" in (refusal(ActionKind.FAIL, REFUSED, Evidence()) or "")
    # the push's answer was lost: proposed now, M-Pesa's list under its reference decides at approval
    lost_push = ReviewView(T.DEPOSIT, S.NEEDS_REVIEW)
    assert refusal(ActionKind.FAIL, lost_push, Evidence()) is None
    assert refusal(ActionKind.FAIL, lost_push, DERIV) is not None
    unpaid = ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, mpesa_request=E.FAILED.value)
    assert refusal(ActionKind.FAIL, unpaid, Evidence()) is None
    assert refusal(ActionKind.FAIL, unpaid, DERIV) is not None
    # no answer from M-Pesa yet: proposed now, STK Query decides at approval
    open_push = ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, mpesa_request=E.SENT.value)
    assert refusal(ActionKind.FAIL, open_push, Evidence()) is None
    said_paid = ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, mpesa_request=E.SUCCEEDED.value)
    assert "may have charged" in (refusal(ActionKind.FAIL, said_paid, Evidence()) or "")


@pytest.mark.parametrize(
    ("view", "resets"),
    [
        (
            ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, E.CONFIRMED.value, deriv_transfer=E.SENT.value),
            ("deriv_transfer",),
        ),
        (ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, E.SENT.value), ("stk_query",)),
        # the push's answer was lost: its parked callback gives the CheckoutRequestID at approval
        (ReviewView(T.DEPOSIT, S.NEEDS_REVIEW), ("stk_query",)),
        (ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, E.SUCCEEDED.value), ("stk_query",)),
        (PAYOUT_OPEN, ("b2c", "b2c_query")),
        (
            ReviewView(
                T.WITHDRAWAL,
                S.NEEDS_REVIEW,
                deriv_withdrawal=E.CONFIRMED.value,
                mpesa_disbursement=E.FAILED.value,
            ),
            ("refund",),
        ),
        (ReviewView(T.WITHDRAWAL, S.NEEDS_REVIEW, deriv_withdrawal=E.SENT.value), ("deriv_withdrawal",)),
    ],
)
def test_a_stuck_step_is_retried_under_its_ids(view: ReviewView, resets: tuple[str, ...]) -> None:
    assert refusal(ActionKind.RETRY, view, Evidence()) is None
    retry = retry_of(view)
    assert retry is not None and retry.reset == resets and retry.back_to_saga


@pytest.mark.parametrize(
    "view",
    [
        REFUSED,  # Deriv refused for good: resolve or refund, never resend
        ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, E.CONFIRMED.value),  # paid, credited, no transfer
        ReviewView(T.DEPOSIT, S.NEEDS_REVIEW, E.REVIEW.value),  # contradictory: a person decides
        ReviewView(
            T.WITHDRAWAL, S.NEEDS_REVIEW, deriv_withdrawal=E.CONFIRMED.value, mpesa_disbursement="REVIEW"
        ),
        ReviewView(T.WITHDRAWAL, S.NEEDS_REVIEW),
    ],
)
def test_what_is_not_retried(view: ReviewView) -> None:
    assert retry_of(view) is None
    assert "can be retried" in (refusal(ActionKind.RETRY, view, Evidence()) or "")


def test_retry_only_a_refund_mpesa_never_acknowledged() -> None:
    stuck = ReviewView(
        T.DEPOSIT,
        S.NEEDS_REVIEW,
        E.CONFIRMED.value,
        mpesa_disbursement=E.SENT.value,
        deriv_transfer=E.FAILED.value,
    )
    assert refusal(ActionKind.RETRY, stuck, Evidence()) is None
    accepted = ReviewView(
        T.DEPOSIT,
        S.NEEDS_REVIEW,
        E.CONFIRMED.value,
        mpesa_disbursement=E.SENT.value,
        deriv_transfer=E.FAILED.value,
        disbursement_accepted=True,
    )
    assert refusal(ActionKind.RETRY, accepted, Evidence()) is not None
    assert refusal(ActionKind.RETRY, REFUSED, Evidence()) is not None


def test_a_retried_step_goes_back_to_outcome_unknown_at_that_step(
    deposit: Transaction, now: datetime
) -> None:
    tx = _under_review(deposit, now)
    tx.resume_after_review("deriv_transfer", now=now)
    assert tx.status is S.OUTCOME_UNKNOWN
    assert tx.outcome_unknown_step is S.DERIV_TRANSFER_SENT  # the saga resolves the same transfer id
    assert any(isinstance(e, ReviewRetryApproved) for e in tx.pull_events())
    with pytest.raises(IllegalTransition):
        tx.resume_after_review("deriv_transfer", now=now)

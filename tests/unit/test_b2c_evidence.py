"""The B2C evidence rules (domain/payments/b2c_evidence.py) as the aggregate applies them."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from domain.payments.attachments import EvidenceStatus as E
from domain.payments.b2c_evidence import (
    NO_CONVERSATION_ID,
    B2CResultEvidence,
    B2CTimeoutEvidence,
    PayoutEffect,
    StatusAnswer,
)
from domain.payments.errors import InvalidEvidence
from domain.payments.events import (
    MpesaCallbackReceived,
    MpesaDisbursementCompleted,
    MpesaDisbursementFailed,
    MpesaDisbursementOutcomeUnknown,
    TransactionCompleted,
    TransactionStatusChanged,
)
from domain.payments.status import TransactionStatus
from domain.payments.stk_evidence import EvidenceProblem
from domain.payments.transaction import Transaction

pytestmark = pytest.mark.unit

OCID = "PENPAY-oc-1"
RECEIPT = "UL6ABCDE12"
KES_CENTS = 1_295_00  # USD 10.00 at 129.50


@pytest.fixture
def paying(withdrawal: Transaction, now: datetime) -> Transaction:
    """A withdrawal whose B2C payout M-Pesa accepted (ConversationID AG_1), events pulled."""
    withdrawal.withdrawal_code_sent(now=now)
    withdrawal.deriv_withdrawal_done(deriv_transaction_id=111, now=now)
    withdrawal.mpesa_disbursement_sent(originator_conversation_id=OCID, now=now)
    withdrawal.mpesa_disbursement_accepted(conversation_id="AG_1", now=now)
    withdrawal.pull_events()
    return withdrawal


def result(**changes: object) -> B2CResultEvidence:
    paid = B2CResultEvidence(
        originator_conversation_id=OCID,
        conversation_id="AG_1",
        paid=True,
        result_code=0,
        result_code_shown="0",
        result_desc="The service request is processed successfully.",
        amount_cents=KES_CENTS,
        amount_shown="1295",
        receipt=RECEIPT,
        raw='{"Result":{}}',
    )
    return dataclasses.replace(paid, **changes)  # type: ignore[arg-type]


def failed(code: int = 2001) -> B2CResultEvidence:
    return result(paid=False, result_code=code, result_code_shown=str(code), result_desc="x", receipt=None)


def timeout(**changes: object) -> B2CTimeoutEvidence:
    t = B2CTimeoutEvidence(
        originator_conversation_id=OCID, conversation_id="AG_1", result_code=1, result_desc="queue", raw="{}"
    )
    return dataclasses.replace(t, **changes)  # type: ignore[arg-type]


def status(**changes: object) -> StatusAnswer:
    completed = StatusAnswer(
        originator_conversation_id=OCID,
        succeeded=True,
        completed=True,
        final_failure=False,
        transaction_status="Completed",
        failure_desc="",
        named_originator_conversation_id=OCID,
        subject_conversation_id="AG_1",
        receipt=RECEIPT,
        amount_cents=KES_CENTS,
        amount_shown="1295",
        party=None,
        raw='{"Result":{"status":1}}',
    )
    return dataclasses.replace(completed, **changes)  # type: ignore[arg-type]


def declined(**changes: object) -> StatusAnswer:
    return status(completed=False, final_failure=True, transaction_status="Declined", **changes)


def evidence(tx: Transaction) -> tuple[str, str | None, int | None]:
    d = tx.mpesa_disbursement
    assert d is not None
    return d.status, d.transaction_receipt, d.result_code


# --- B2C result ---------------------------------------------------------------------------------


def test_a_first_success_is_recorded_with_the_version_and_the_spec_event(
    paying: Transaction, now: datetime
) -> None:
    version = paying.version
    assert paying.b2c_result_received(result(), now=now).effect is PayoutEffect.SUCCESS_RECORDED
    assert evidence(paying) == (E.SUCCEEDED, RECEIPT, 0)
    assert paying.status is TransactionStatus.MPESA_DISBURSEMENT_SENT  # completed once confirmed
    assert paying.version == version + 1
    (event,) = paying.pull_events()
    assert isinstance(event, MpesaCallbackReceived)
    assert (event.version, event.originator_conversation_id, event.checkout_request_id) == (
        version + 1,
        OCID,
        None,
    )
    assert (event.result_code, event.mpesa_receipt_number) == (0, RECEIPT)


def test_the_same_result_again_is_a_duplicate_and_a_different_one_a_conflict(
    paying: Transaction, now: datetime
) -> None:
    paying.b2c_result_received(result(), now=now)
    paying.pull_events()
    version = paying.version
    assert paying.b2c_result_received(result(), now=now).effect is PayoutEffect.DUPLICATE
    conflict = paying.b2c_result_received(failed(), now=now)
    assert (conflict.effect, conflict.problem, conflict.conflict) == (
        PayoutEffect.REVIEW,
        EvidenceProblem.CONFLICTING_RESULT,
        True,
    )
    assert conflict.detail == "ResultCode 2001 for a disbursement already SUCCEEDED"
    assert (paying.version, paying.pull_events(), evidence(paying)) == (
        version,
        [],
        (E.SUCCEEDED, RECEIPT, 0),
    )


def test_a_failure_is_recorded_once_and_the_same_code_again_is_a_duplicate(
    paying: Transaction, now: datetime
) -> None:
    assert paying.b2c_result_received(failed(), now=now).effect is PayoutEffect.FAILURE_RECORDED
    assert evidence(paying) == (E.FAILED, None, 2001)
    assert [type(e) for e in paying.pull_events()] == [MpesaCallbackReceived]
    assert paying.b2c_result_received(failed(), now=now).effect is PayoutEffect.DUPLICATE
    assert paying.b2c_result_received(failed(2040), now=now).problem is EvidenceProblem.CONFLICTING_RESULT
    assert paying.b2c_result_received(result(), now=now).conflict  # paid after failed: a person looks


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"conversation_id": "AG_other"}, EvidenceProblem.CONVERSATION_ID_MISMATCH),
        ({"amount_cents": KES_CENTS + 100}, EvidenceProblem.AMOUNT_MISMATCH),
        ({"amount_cents": None}, EvidenceProblem.AMOUNT_MISMATCH),
        ({"receipt": None}, EvidenceProblem.RECEIPT_MISSING),
        ({"receipt": "ul6abcde12"}, EvidenceProblem.RECEIPT_INVALID),
    ],
)
def test_a_result_that_does_not_match_changes_nothing(
    paying: Transaction, now: datetime, changes: dict[str, object], problem: EvidenceProblem
) -> None:
    version = paying.version
    judgement = paying.b2c_result_received(result(**changes), now=now)
    assert (judgement.effect, judgement.problem, judgement.conflict) == (PayoutEffect.REVIEW, problem, False)
    assert (paying.version, paying.pull_events(), evidence(paying)) == (version, [], (E.SENT, None, None))


def test_a_failure_is_not_checked_for_amount_or_receipt(paying: Transaction, now: datetime) -> None:
    answer = dataclasses.replace(failed(), amount_cents=None)
    assert paying.b2c_result_received(answer, now=now).effect is PayoutEffect.FAILURE_RECORDED


def test_the_first_conversation_id_is_taken_also_in_place_of_the_duplicate_marker(
    withdrawal: Transaction, now: datetime
) -> None:
    withdrawal.withdrawal_code_sent(now=now)
    withdrawal.deriv_withdrawal_done(deriv_transaction_id=111, now=now)
    withdrawal.mpesa_disbursement_sent(originator_conversation_id=OCID, now=now)
    withdrawal.mpesa_disbursement_accepted(conversation_id=NO_CONVERSATION_ID, now=now)
    # the marker is no id of Daraja's: nothing is compared with it, and the result's id replaces it
    assert withdrawal.b2c_result_received(result(conversation_id="AG_9"), now=now).problem is None
    assert withdrawal.mpesa_disbursement is not None
    assert withdrawal.mpesa_disbursement.conversation_id == "AG_9"


def test_an_answer_about_another_payout_of_the_transaction_is_refused(
    paying: Transaction, now: datetime
) -> None:
    with pytest.raises(InvalidEvidence):
        paying.b2c_result_received(result(originator_conversation_id="PENPAY-oc-0"), now=now)


# --- queue timeout ------------------------------------------------------------------------------


def test_a_queue_timeout_makes_the_outcome_unknown_once(paying: Transaction, now: datetime) -> None:
    version = paying.version
    assert paying.b2c_timeout_received(timeout(), now=now).effect is PayoutEffect.OUTCOME_UNKNOWN
    assert evidence(paying) == (E.UNKNOWN, None, 1)
    (event,) = paying.pull_events()
    assert isinstance(event, MpesaDisbursementOutcomeUnknown)
    assert (event.version, event.originator_conversation_id) == (version + 1, OCID)
    assert paying.b2c_timeout_received(timeout(), now=now).effect is PayoutEffect.DUPLICATE
    mismatch = paying.b2c_timeout_received(timeout(conversation_id="AG_x"), now=now)
    assert mismatch.problem is EvidenceProblem.CONVERSATION_ID_MISMATCH
    # the result still settles it: UNKNOWN -> SUCCEEDED
    assert paying.b2c_result_received(result(), now=now).effect is PayoutEffect.SUCCESS_RECORDED


def test_a_late_timeout_after_the_result_changes_nothing(paying: Transaction, now: datetime) -> None:
    paying.b2c_result_received(result(), now=now)
    version = paying.version
    assert paying.b2c_timeout_received(timeout(), now=now).effect is PayoutEffect.DUPLICATE
    assert (paying.version, evidence(paying)) == (version, (E.SUCCEEDED, RECEIPT, 0))


# --- Transaction Status -------------------------------------------------------------------------


def test_completed_confirms_the_payout_and_raises_the_spec_event_once(
    paying: Transaction, now: datetime
) -> None:
    paying.b2c_result_received(result(), now=now)
    paying.pull_events()
    assert paying.b2c_status_answered(status(), now=now).effect is PayoutEffect.CONFIRMED
    assert evidence(paying) == (E.CONFIRMED, RECEIPT, 0)
    (event,) = paying.pull_events()
    assert isinstance(event, MpesaDisbursementCompleted)
    assert (event.version, event.transaction_receipt, event.amount.amount_minor) == (
        paying.version,
        RECEIPT,
        KES_CENTS,
    )
    # the saga then completes the withdrawal: no second MpesaDisbursementCompleted
    paying.mpesa_disbursement_completed(
        transaction_receipt=RECEIPT, result_desc=None, raw_result=None, now=now
    )
    events = paying.pull_events()
    assert [type(e) for e in events] == [TransactionStatusChanged, TransactionCompleted]
    assert paying.b2c_status_answered(status(), now=now).effect is PayoutEffect.CONFIRMED_AGAIN
    second = paying.b2c_status_answered(status(receipt="UL6ZZZZZ99"), now=now)
    assert second.problem is EvidenceProblem.FOREIGN_ANSWER  # another receipt than the one we hold


def test_completed_alone_confirms_a_payout_whose_result_never_came(
    paying: Transaction, now: datetime
) -> None:
    paying.b2c_timeout_received(timeout(), now=now)
    assert paying.b2c_status_answered(status(), now=now).effect is PayoutEffect.CONFIRMED
    d = paying.mpesa_disbursement
    assert d is not None
    assert (d.status, d.transaction_receipt, d.result_code, d.raw_result) == (
        E.CONFIRMED,
        RECEIPT,
        0,
        '{"Result":{"status":1}}',
    )


def test_completed_with_another_receipt_than_the_result_puts_the_payout_in_review(
    paying: Transaction, now: datetime
) -> None:
    paying.b2c_result_received(result(), now=now)
    version = paying.version
    answer = status(receipt="UL6ZZZZZ99", named_originator_conversation_id=OCID)
    # the receipt we hold differs: about another payment, nothing changes
    assert paying.b2c_status_answered(answer, now=now).problem is EvidenceProblem.FOREIGN_ANSWER
    assert paying.version == version


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"amount_cents": KES_CENTS - 100}, EvidenceProblem.AMOUNT_MISMATCH),
        ({"receipt": None}, EvidenceProblem.RECEIPT_INVALID),
        ({"receipt": "bad"}, EvidenceProblem.RECEIPT_INVALID),
        ({"subject_conversation_id": "AG_other"}, EvidenceProblem.FOREIGN_ANSWER),
    ],
)
def test_a_completed_answer_that_does_not_match_changes_nothing(
    paying: Transaction, now: datetime, changes: dict[str, object], problem: EvidenceProblem
) -> None:
    version = paying.version
    judgement = paying.b2c_status_answered(status(**changes), now=now)
    assert (judgement.effect, judgement.problem) == (PayoutEffect.REVIEW, problem)
    assert (paying.version, evidence(paying)) == (version, (E.SENT, None, None))


def test_a_final_failure_fails_a_payout_not_yet_paid(paying: Transaction, now: datetime) -> None:
    assert paying.b2c_status_answered(declined(), now=now).effect is PayoutEffect.FAILURE_RECORDED
    d = paying.mpesa_disbursement
    assert d is not None
    assert (d.status, d.result_desc, d.result_code) == (E.FAILED, "status: Declined", None)
    (event,) = paying.pull_events()
    assert isinstance(event, MpesaDisbursementFailed)
    assert (event.transaction_status, event.version) == ("Declined", paying.version)


def test_a_final_failure_after_a_success_contradicts_it(paying: Transaction, now: datetime) -> None:
    paying.b2c_result_received(result(), now=now)
    paying.pull_events()
    judgement = paying.b2c_status_answered(declined(), now=now)
    assert (judgement.effect, judgement.problem, judgement.detail) == (
        PayoutEffect.CONTRADICTED,
        EvidenceProblem.CONFIRMATION_MISMATCH,
        "status Declined after success",
    )
    assert evidence(paying)[0] == E.REVIEW
    assert paying.pull_events() == []  # the saga reads REVIEW on its next look


def test_a_failed_query_naming_nothing_is_kept_and_settles_nothing(
    paying: Transaction, now: datetime
) -> None:
    version = paying.version
    answer = status(
        succeeded=False, completed=False, named_originator_conversation_id=None, failure_desc="[25] x"
    )
    judgement = paying.b2c_status_answered(answer, now=now)
    assert (judgement.effect, judgement.problem, judgement.detail) == (
        PayoutEffect.NOTHING_SETTLED,
        EvidenceProblem.STATUS_FAILED,
        "[25] x",
    )
    assert paying.version == version


def test_an_answer_in_progress_settles_nothing(paying: Transaction, now: datetime) -> None:
    answer = status(completed=False, transaction_status="Pending")
    judgement = paying.b2c_status_answered(answer, now=now)
    assert (judgement.effect, judgement.problem) == (PayoutEffect.NOTHING_SETTLED, None)


def test_an_answer_naming_no_id_of_ours_is_believed_only_for_our_payee(
    paying: Transaction, now: datetime
) -> None:
    anonymous = {"named_originator_conversation_id": None, "subject_conversation_id": None}
    stranger = paying.b2c_status_answered(status(**anonymous, party="2547*****999"), now=now)
    assert stranger.problem is EvidenceProblem.PHONE_MISMATCH
    assert stranger.detail == "status result names no id of ours and party 2547*****999 is not the payee"
    nobody = paying.b2c_status_answered(status(**anonymous), now=now)
    assert nobody.problem is EvidenceProblem.PHONE_MISMATCH  # shows neither an id nor the customer
    ours = paying.b2c_status_answered(status(**anonymous, party="2547*****678"), now=now)
    assert ours.effect is PayoutEffect.CONFIRMED  # the visible digits are the payee's

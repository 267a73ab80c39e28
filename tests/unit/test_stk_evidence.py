"""The STK evidence rules (domain/payments/stk_evidence.py) as the aggregate applies them."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from domain.payments.attachments import EvidenceStatus as E
from domain.payments.attachments import MpesaRequest
from domain.payments.events import MpesaCallbackReceived
from domain.payments.status import TransactionStatus
from domain.payments.stk_evidence import (
    CallbackEffect,
    EvidenceProblem,
    QueryEffect,
    StkCallbackEvidence,
    StkQueryAnswer,
)
from domain.payments.transaction import Transaction
from domain.wallet.money import Currency, Money
from tests.unit.conftest import stk_request

pytestmark = pytest.mark.unit


@pytest.fixture
def pushed(deposit: Transaction, now: datetime) -> Transaction:
    deposit.stk_push_sent(stk_request(deposit), now=now)
    deposit.pull_events()
    return deposit


def paid(tx: Transaction, **changes: object) -> StkCallbackEvidence:
    callback = StkCallbackEvidence(
        checkout_request_id="ws_CO_1",
        merchant_request_id="mr-1",
        result_code=0,
        result_desc="The service request is processed successfully.",
        paid=True,
        amount=tx.amount,
        receipt="NLJ7RT61SV",
        phone_digits=tx.phone.value,
        raw='{"Body":{}}',
    )
    return dataclasses.replace(callback, **changes)  # type: ignore[arg-type]


def not_paid(tx: Transaction) -> StkCallbackEvidence:
    return paid(
        tx, paid=False, result_code=1032, result_desc="Request cancelled by user", amount=None, receipt=None
    )


def test_a_first_success_is_recorded_with_the_version_and_the_spec_event(
    pushed: Transaction, now: datetime
) -> None:
    version = pushed.version
    judgement = pushed.stk_callback_received(paid(pushed), now=now)
    assert judgement.effect is CallbackEffect.SUCCESS_RECORDED
    assert pushed.mpesa_request is not None
    assert (pushed.mpesa_request.status, pushed.mpesa_request.mpesa_receipt_number) == (
        E.SUCCEEDED,
        "NLJ7RT61SV",
    )
    assert pushed.status is TransactionStatus.AWAITING_MPESA  # credited only once STK Query agrees
    assert pushed.version == version + 1
    (event,) = pushed.pull_events()
    assert isinstance(event, MpesaCallbackReceived)
    assert (event.version, event.result_code, event.mpesa_receipt_number) == (version + 1, 0, "NLJ7RT61SV")


def test_the_same_callback_again_changes_nothing(pushed: Transaction, now: datetime) -> None:
    pushed.stk_callback_received(paid(pushed), now=now)
    pushed.pull_events()
    version = pushed.version
    assert pushed.stk_callback_received(paid(pushed), now=now).effect is CallbackEffect.DUPLICATE
    pushed.stk_callback_received(not_paid(pushed), now=now)  # a different result: for review
    assert (pushed.version, pushed.pull_events()) == (version, [])


def test_a_failure_then_a_success_is_a_conflict_for_review(pushed: Transaction, now: datetime) -> None:
    assert pushed.stk_callback_received(not_paid(pushed), now=now).effect is CallbackEffect.FAILURE_RECORDED
    assert pushed.mpesa_request is not None and pushed.mpesa_request.status == E.FAILED
    judgement = pushed.stk_callback_received(paid(pushed), now=now)
    assert (judgement.effect, judgement.problem, judgement.conflict) == (
        CallbackEffect.REVIEW,
        EvidenceProblem.CONFLICTING_RESULT,
        True,
    )
    assert pushed.mpesa_request.status == E.FAILED


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"merchant_request_id": "mr-other"}, EvidenceProblem.MERCHANT_ID_MISMATCH),
        ({"amount": Money.parse("999", Currency.KES)}, EvidenceProblem.AMOUNT_MISMATCH),
        ({"amount": None}, EvidenceProblem.AMOUNT_MISMATCH),
        ({"receipt": None}, EvidenceProblem.RECEIPT_MISSING),
        ({"receipt": "abc"}, EvidenceProblem.RECEIPT_INVALID),
        ({"phone_digits": "254700000001"}, EvidenceProblem.PHONE_MISMATCH),
    ],
)
def test_a_callback_that_does_not_fit_the_request_changes_nothing(
    pushed: Transaction, now: datetime, changes: dict[str, object], problem: EvidenceProblem
) -> None:
    before = pushed.mpesa_request
    version = pushed.version
    judgement = pushed.stk_callback_received(paid(pushed, **changes), now=now)
    assert (judgement.effect, judgement.problem) == (CallbackEffect.REVIEW, problem)
    assert (pushed.mpesa_request, pushed.version, pushed.pull_events()) == (before, version, [])


def test_a_masked_phone_is_compared_on_its_visible_digits(pushed: Transaction, now: datetime) -> None:
    msisdn = pushed.phone.value  # 2547XXXXXXXX
    other_tail = f"{(int(msisdn[-3:]) + 1) % 1000:03d}"
    foreign = paid(pushed, phone_digits=None, phone_shown=f"0{msisdn[3:6]}***{other_tail}")
    before, version = pushed.mpesa_request, pushed.version
    judgement = pushed.stk_callback_received(foreign, now=now)
    assert (judgement.effect, judgement.problem) == (CallbackEffect.REVIEW, EvidenceProblem.PHONE_MISMATCH)
    assert (pushed.mpesa_request, pushed.version, pushed.pull_events()) == (before, version, [])

    other_head = paid(pushed, phone_digits=None, phone_shown=f"0{int(msisdn[3:9]) + 1:06d}***")
    assert pushed.stk_callback_received(other_head, now=now).problem is EvidenceProblem.PHONE_MISMATCH

    for shown in (f"0{msisdn[3:6]}***{msisdn[-3:]}", f"0{msisdn[3:9]}***"):  # both 2026 forms
        ours = paid(pushed, phone_digits=None, phone_shown=shown)
        assert pushed.stk_callback_received(ours, now=now).effect in (
            CallbackEffect.SUCCESS_RECORDED,
            CallbackEffect.DUPLICATE,
        )


def test_an_absent_phone_is_not_compared(pushed: Transaction, now: datetime) -> None:
    judgement = pushed.stk_callback_received(paid(pushed, phone_digits=None), now=now)
    assert judgement.effect is CallbackEffect.SUCCESS_RECORDED


def test_query_confirms_a_recorded_success_once(pushed: Transaction, now: datetime) -> None:
    pushed.stk_callback_received(paid(pushed), now=now)
    answer = StkQueryAnswer(paid=True, result_code=0, result_desc="ok", evidence="{}")
    assert pushed.stk_query_answered(answer, now=now) is QueryEffect.CONFIRMED
    assert pushed.mpesa_request is not None and pushed.mpesa_request.status == E.CONFIRMED
    version = pushed.version
    assert pushed.stk_query_answered(answer, now=now) is QueryEffect.SETTLED
    assert pushed.version == version


def test_query_contradicting_the_callback_sends_it_to_review(pushed: Transaction, now: datetime) -> None:
    pushed.stk_callback_received(paid(pushed), now=now)
    answer = StkQueryAnswer(paid=False, result_code=1032, result_desc="cancelled", evidence="{}")
    assert pushed.stk_query_answered(answer, now=now) is QueryEffect.CONTRADICTED
    assert pushed.mpesa_request is not None and pushed.mpesa_request.status == E.REVIEW


def test_a_late_callback_brings_the_receipt_of_a_query_confirmation(
    pushed: Transaction, now: datetime
) -> None:
    answer = StkQueryAnswer(paid=True, result_code=0, result_desc="ok", evidence="{}")
    assert pushed.stk_query_answered(answer, now=now) is QueryEffect.CONFIRMED
    assert pushed.mpesa_request is not None and pushed.mpesa_request.mpesa_receipt_number is None
    assert pushed.stk_callback_received(paid(pushed), now=now).effect is CallbackEffect.RECEIPT_ADDED
    after: MpesaRequest | None = pushed.mpesa_request  # re-read: the callback changed it
    assert after is not None
    assert (after.status, after.mpesa_receipt_number) == (E.CONFIRMED, "NLJ7RT61SV")

"""The review rules of a deposit whose STK push's answer was lost (application.payments.lost_push):
M-Pesa's list under the push's AccountReference and the callbacks parked for want of its id."""

from __future__ import annotations

import uuid

import pytest

from application.payments.lost_push import (
    LostPushRecords,
    ParkedPayment,
    PulledPayment,
    judge_fail,
    judge_retry,
    push_reference,
)
from domain.shared.ids import TransactionId
from domain.wallet.money import Currency, Money

pytestmark = pytest.mark.unit

TX = TransactionId(uuid.UUID("01890a5d-ac96-774b-bcce-b302099a8057"))
REF = "B302099A8057"
KES_1300 = Money.of_minor(1_300_00, Currency.KES)
PHONE = "254700031234"


def parked(receipt: str, *, amount: int = 1_300_00, phone: str | None = "2547****1234") -> ParkedPayment:
    return ParkedPayment(f"ws_CO_{receipt}", f"mr-{receipt}", receipt, amount, phone)


def test_the_reference_is_the_one_the_push_carries() -> None:
    assert push_reference(TX) == REF


def test_a_payment_listed_under_the_reference_refuses_failing() -> None:
    records = LostPushRecords(pulled=(PulledPayment("UAB1CD2EF3", 1_300_00, REF.lower()),), parked=())
    judged = judge_fail(records, reference=REF, amount=KES_1300, phone=PHONE)
    assert judged.denial is not None and "UAB1CD2EF3" in judged.denial and judged.wait is None


def test_nothing_under_the_reference_lets_it_fail() -> None:
    records = LostPushRecords(
        pulled=(PulledPayment("UAB1CD2EF3", 1_300_00, "OTHERREF0000"),),
        # parked, but M-Pesa lists its receipt under another reference: another push's
        parked=(parked("UAB1CD2EF3"),),
    )
    assert judge_fail(records, reference=REF, amount=KES_1300, phone=PHONE).denial is None
    assert judge_fail(records, reference=REF, amount=KES_1300, phone=PHONE).wait is None


def test_a_parked_lookalike_m_pesa_does_not_list_yet_makes_failing_wait() -> None:
    lookalike = LostPushRecords(pulled=(), parked=(parked("UAB1CD2EF3"),))
    judged = judge_fail(lookalike, reference=REF, amount=KES_1300, phone=PHONE)
    assert judged.wait is not None and "UAB1CD2EF3" in judged.wait
    # another phone or another amount is not this push's
    other_phone = LostPushRecords(pulled=(), parked=(parked("UAB1CD2EF3", phone="2547****9999"),))
    assert judge_fail(other_phone, reference=REF, amount=KES_1300, phone=PHONE).wait is None
    other_amount = LostPushRecords(pulled=(), parked=(parked("UAB1CD2EF3", amount=1_299_00),))
    assert judge_fail(other_amount, reference=REF, amount=KES_1300, phone=PHONE).wait is None


def test_a_retry_takes_the_callback_naming_the_listed_receipt() -> None:
    records = LostPushRecords(
        pulled=(PulledPayment("UAB1CD2EF3", 1_300_00, REF), PulledPayment("UZZ9ZZ9ZZ9", 1_300_00, "X")),
        parked=(parked("UZZ9ZZ9ZZ9"), parked("UAB1CD2EF3")),
    )
    judged = judge_retry(records, reference=REF, amount=KES_1300)
    assert judged.found == parked("UAB1CD2EF3")
    assert judged.denial is None and judged.wait is None


def test_a_retry_is_refused_or_waits_when_the_records_do_not_give_the_id() -> None:
    nothing = LostPushRecords(pulled=(), parked=(parked("UAB1CD2EF3"),))
    assert "no payment" in (judge_retry(nothing, reference=REF, amount=KES_1300).denial or "")
    other_amount = LostPushRecords(pulled=(PulledPayment("UAB1CD2EF3", 1_000_00, REF),), parked=())
    assert "not the deposit's" in (judge_retry(other_amount, reference=REF, amount=KES_1300).denial or "")
    twice = LostPushRecords(
        pulled=(PulledPayment("UAB1CD2EF3", 1_300_00, REF), PulledPayment("UAB1CD2EF4", 1_300_00, REF)),
        parked=(),
    )
    assert "a person must look" in (judge_retry(twice, reference=REF, amount=KES_1300).denial or "")
    no_callback = LostPushRecords(pulled=(PulledPayment("UAB1CD2EF3", 1_300_00, REF),), parked=())
    judged = judge_retry(no_callback, reference=REF, amount=KES_1300)
    assert judged.found is None and judged.wait is not None and "no callback" in judged.wait
    assert judged.listed == PulledPayment("UAB1CD2EF3", 1_300_00, REF)  # for people, after the wait
    bad_callback = LostPushRecords(
        pulled=(PulledPayment("UAB1CD2EF3", 1_300_00, REF),), parked=(parked("UAB1CD2EF3", amount=1),)
    )
    assert "another amount" in (judge_retry(bad_callback, reference=REF, amount=KES_1300).denial or "")

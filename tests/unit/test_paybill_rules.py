"""Paybill (C2B) value rules: the deposit reference's shape and check character, masked MSISDNs,
the C2B body parser, and a paybill deposit starting with its M-Pesa payment confirmed."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from application.payments.rates import FixedRates
from domain.payments.attachments import EvidenceStatus
from domain.payments.idempotency import IdempotencyKey
from domain.payments.paybill import (
    ALPHABET,
    masked,
    new_reference,
    normalise_reference,
    visible_digits_agree,
)
from domain.payments.status import TransactionStatus
from domain.payments.transaction import Transaction
from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.phone_number import PhoneNumber
from domain.wallet.money import Currency, Money
from mpesa_adapter.callback_parsing import MalformedCallback, parse_c2b

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def test_a_reference_reads_back_in_any_case_and_spacing_and_a_single_typo_is_refused() -> None:
    rng = random.Random(7)
    for _ in range(200):
        reference = new_reference(rng.randrange)
        assert len(reference) == 10 and reference.startswith("PP")
        assert normalise_reference(reference) == reference
        assert normalise_reference(f" {reference[:5].lower()}-{reference[5:]} ") == reference
        for i, c in itertools.product(range(2, 10), ALPHABET):
            if c != reference[i]:
                assert normalise_reference(reference[:i] + c + reference[i + 1 :]) is None
        for i in range(2, 9):  # neighbours swapped, the check character's included
            swapped = reference[:i] + reference[i + 1] + reference[i] + reference[i + 2 :]
            if swapped != reference:
                assert normalise_reference(swapped) is None
    assert normalise_reference("PP0000000O") is None  # 0 and O are no characters of it
    assert normalise_reference("") is None


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        ("0722***000", "254722123000", True),
        ("0722***000", "0722***000", True),
        ("2547 ***** 126", "0722***126", True),
        ("0722***000", "254733123000", False),
        ("0722***000", "0722***001", False),
        ("254722123000", "+254722123000", True),
        ("254722123000", "254722123001", False),
        (None, "0722***000", True),
    ],
)
def test_masked_numbers_are_compared_on_their_visible_digits(a: str | None, b: str, agree: bool) -> None:
    assert visible_digits_agree(a, b) is agree
    assert visible_digits_agree(b, a) is agree


def test_only_the_masked_form_of_a_number_is_kept() -> None:
    assert masked("254722123456") == "0722***456"
    assert masked("0722***456") == "0722***456"
    assert masked(None) is None


def test_the_c2b_body_is_parsed_strictly() -> None:
    body = {
        "TransactionType": "Pay Bill",
        "TransID": "UL6AB12CDE",
        "TransTime": "20261206120000",
        "TransAmount": "1300.00",
        "BusinessShortCode": "174379",
        "BillRefNumber": "PPABCDEFGH",
        "MSISDN": "0722***000",
        "FirstName": "JOHN",
    }
    parsed = parse_c2b(body, b"{}")
    assert (parsed.trans_id, parsed.amount, parsed.shortcode) == ("UL6AB12CDE", Decimal("1300.00"), "174379")
    assert parsed.msisdn_masked
    for broken in (
        {**body, "TransID": "nope"},
        {**body, "TransAmount": "ten"},
        {**body, "BusinessShortCode": "abc"},
        {**body, "MSISDN": {"x": 1}},
        {k: v for k, v in body.items() if k != "BillRefNumber"},
    ):
        with pytest.raises(MalformedCallback):
            parse_c2b(broken, b"{}")


def test_a_paybill_deposit_starts_with_its_mpesa_payment_confirmed() -> None:
    rate = FixedRates().lock(base=Currency.KES, quote=Currency.USD, now=NOW)
    user = UserId.new()
    tx = Transaction.start_paybill_deposit(
        user_id=user,
        amount=Money(1_300_00, Currency.KES),
        idempotency_key=IdempotencyKey("a" * 64, str(user), "deposit"),
        locked_rate=rate,
        phone=PhoneNumber.mpesa("254712345678"),
        deriv_login_id=DerivLoginId("CR90000001"),
        mpesa_receipt_number="UL6AB12CDE",
        shortcode="174379",
        raw_confirmation="{}",
        now=NOW,
    )
    assert tx.status is TransactionStatus.AWAITING_MPESA
    assert tx.mpesa_request is not None and tx.mpesa_request.status == EvidenceStatus.CONFIRMED
    assert tx.mpesa_request.checkout_request_id == "C2B-UL6AB12CDE"
    assert tx.mpesa_request.mpesa_receipt_number == "UL6AB12CDE"
    assert tx.converted_amount == Money(10_00, Currency.USD)

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from domain.payments.attachments import DerivTransfer, EvidenceStatus, MpesaDisbursement, MpesaRequest
from domain.payments.errors import InvalidEvidence
from domain.shared.ids import TransactionId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.phone_number import PhoneNumber
from domain.wallet.errors import CurrencyMismatch, NotWholeShillings
from domain.wallet.money import Currency, Money

pytestmark = pytest.mark.unit


def _request(now: datetime) -> MpesaRequest:
    return MpesaRequest.sent(
        transaction_id=TransactionId.new(),
        checkout_request_id="ws_CO_1",
        merchant_request_id="m-1",
        phone=PhoneNumber("254712345678"),
        amount=Money.parse("100", Currency.KES),
        now=now,
    )


def test_stk_request_must_ask_whole_shillings(now: datetime) -> None:
    with pytest.raises(NotWholeShillings):
        replace(_request(now), amount=Money.parse("100.5", Currency.KES))


def test_stk_callback_updates_a_copy(now: datetime) -> None:
    request = _request(now)
    paid = request.with_callback(
        result_code=0, result_desc="ok", mpesa_receipt_number="R", raw_callback="{}", now=now
    )
    assert (request.status, paid.status) == (EvidenceStatus.SENT, EvidenceStatus.CONFIRMED)
    failed = request.with_callback(
        result_code=1032, result_desc="cancel", mpesa_receipt_number=None, raw_callback=None, now=now
    )
    assert failed.status == EvidenceStatus.FAILED


def test_unknown_evidence_status_is_refused(now: datetime) -> None:
    with pytest.raises(InvalidEvidence):
        replace(_request(now), status="MAYBE")


def test_statuses_are_plain_strings_for_storage(now: datetime) -> None:
    assert replace(_request(now), status="CONFIRMED").status == "CONFIRMED"


def test_deriv_transfer_is_in_usd_and_named_after_the_transaction(now: datetime) -> None:
    tx_id = TransactionId.new()
    transfer = DerivTransfer.sent(
        transaction_id=tx_id, client_loginid=DerivLoginId("CR1"), amount=Money(500, Currency.USD), now=now
    )
    assert transfer.transfer_id == str(tx_id)
    with pytest.raises(InvalidEvidence):
        replace(transfer, transfer_id="other")
    with pytest.raises(CurrencyMismatch):
        replace(transfer, amount=Money(500, Currency.KES))


def test_b2c_payment_is_whole_kes(now: datetime) -> None:
    with pytest.raises(NotWholeShillings):
        MpesaDisbursement.sent(
            transaction_id=TransactionId.new(),
            originator_conversation_id="oc",
            conversation_id=None,
            phone=PhoneNumber("254712345678"),
            amount=Money(10_050, Currency.KES),
            now=now,
        )

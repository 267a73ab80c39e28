"""The texts of payment notices: both currencies, the Deriv account, a reference; nothing for
statuses users are not told about."""

from __future__ import annotations

import pytest

from application.notifications.payment_notices import notice_for
from domain.payments.status import TransactionStatus as S
from domain.payments.transaction import Transaction

pytestmark = pytest.mark.unit


def test_a_completed_and_a_failed_deposit_show_kes_paid_and_usd_credited(deposit: Transaction) -> None:
    done = notice_for(deposit, S.COMPLETED)
    assert done is not None and done.kind == "deposit completed"
    assert "deposit of KES 1,000.00 is complete: USD 7.72 credited to Deriv CR1234567" in done.sms
    assert done.sms.endswith(f"Ref {str(deposit.id)[-8:]}") and len(done.sms) <= 160
    assert str(deposit.id) in done.email and "KES 1,000.00" in done.email

    failed = notice_for(deposit, S.FAILED)
    assert failed is not None and "KES 1,000.00 (USD 7.72) did not go through" in failed.sms


def test_a_paid_and_a_reversed_withdrawal_show_usd_taken_and_kes_paid(withdrawal: Transaction) -> None:
    paid = notice_for(withdrawal, S.COMPLETED)
    assert paid is not None and paid.kind == "withdrawal paid"
    told = "USD 10.00 withdrawn from Deriv CR1234567: KES 1,295.00 paid to your M-Pesa 254******678"
    assert told in paid.sms
    assert "712345" not in paid.sms + paid.email  # the phone is masked

    reversed_ = notice_for(withdrawal, S.REVERSED)
    assert reversed_ is not None and "could not pay KES 1,295.00; your USD 10.00 went back" in reversed_.sms


def test_a_refunded_deposit_tells_the_kes_went_back_to_mpesa(deposit: Transaction) -> None:
    refunded = notice_for(deposit, S.REVERSED)
    assert refunded is not None and refunded.kind == "deposit refunded"
    assert "your KES 1,000.00 was sent back to M-Pesa 254******678" in refunded.sms
    assert len(refunded.sms) <= 160 and "712345" not in refunded.sms + refunded.email


def test_other_statuses_are_not_told(deposit: Transaction, withdrawal: Transaction) -> None:
    assert notice_for(deposit, S.NEEDS_REVIEW) is None
    assert notice_for(withdrawal, S.FAILED) is None
    assert notice_for(withdrawal, S.AWAITING_WITHDRAWAL_CODE) is None

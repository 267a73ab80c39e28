"""Builders for unit tests: a fixed instant, rates, users' contacts, started transactions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.payments.attachments import MpesaRequest
from domain.payments.idempotency import IdempotencyKey
from domain.payments.transaction import Transaction
from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.phone_number import PhoneNumber
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money

NOW = datetime(2025, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def usd_to_kes() -> LockedRate:
    """1 USD = 129.50 KES, valid five minutes from NOW."""
    return LockedRate.create(
        quote_id="quote-1",
        base=Currency.USD,
        quote=Currency.KES,
        rate="129.50",
        locked_at=NOW,
        expires_at=NOW + timedelta(minutes=5),
    )


@pytest.fixture
def kes_to_usd(usd_to_kes: LockedRate) -> LockedRate:
    return usd_to_kes.inverse()


@pytest.fixture
def phone() -> PhoneNumber:
    return PhoneNumber("+254712345678")


@pytest.fixture
def login_id() -> DerivLoginId:
    return DerivLoginId("CR1234567")


@pytest.fixture
def deposit(kes_to_usd: LockedRate, phone: PhoneNumber, login_id: DerivLoginId) -> Transaction:
    """A fresh KES 1,000 deposit, events already pulled."""
    user_id = UserId.new()
    tx = Transaction.start_deposit(
        user_id=user_id,
        amount=Money.parse("1000", Currency.KES),
        idempotency_key=IdempotencyKey.create("dep-1", scope=str(user_id), operation="deposit"),
        locked_rate=kes_to_usd,
        phone=phone,
        deriv_login_id=login_id,
        now=NOW,
    )
    tx.pull_events()
    return tx


@pytest.fixture
def withdrawal(usd_to_kes: LockedRate, phone: PhoneNumber, login_id: DerivLoginId) -> Transaction:
    """A fresh USD 10.00 withdrawal, events already pulled."""
    user_id = UserId.new()
    tx = Transaction.start_withdrawal(
        user_id=user_id,
        amount=Money.parse("10.00", Currency.USD),
        idempotency_key=IdempotencyKey.create("wd-1", scope=str(user_id), operation="withdrawal"),
        locked_rate=usd_to_kes,
        phone=phone,
        deriv_login_id=login_id,
        now=NOW,
    )
    tx.pull_events()
    return tx


def stk_request(tx: Transaction, checkout_request_id: str = "ws_CO_1") -> MpesaRequest:
    return MpesaRequest.sent(
        transaction_id=tx.id,
        checkout_request_id=checkout_request_id,
        merchant_request_id="mr-1",
        phone=tx.phone,
        amount=tx.amount,
        now=NOW,
    )

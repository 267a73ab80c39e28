"""Building deposit transactions for the persistence tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.payments.attachments import MpesaRequest
from domain.payments.idempotency import IdempotencyKey
from domain.payments.transaction import Transaction
from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.phone_number import PhoneNumber
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money

PHONE = PhoneNumber.mpesa("254712345678")
STARTED_AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)  # when a deposit starts, unless told


def deposit_key(user_id: UserId, raw: str = "deposit-1") -> IdempotencyKey:
    return IdempotencyKey.create(raw, scope=str(user_id), operation="deposit")


def new_deposit(
    user_id: UserId, key: IdempotencyKey, shillings: int = 1_000, *, now: datetime = STARTED_AT
) -> Transaction:
    rate = LockedRate.create(
        quote_id="q-1",
        base=Currency.KES,
        quote=Currency.USD,
        rate="0.0077",
        locked_at=now,
        expires_at=now + timedelta(minutes=5),
    )
    return Transaction.start_deposit(
        user_id=user_id,
        amount=Money(shillings * 100, Currency.KES),
        idempotency_key=key,
        locked_rate=rate,
        phone=PHONE,
        deriv_login_id=DerivLoginId("CR100001"),
        now=now,
    )


def stk_request(tx: Transaction, checkout_request_id: str, *, now: datetime = STARTED_AT) -> MpesaRequest:
    return MpesaRequest.sent(
        transaction_id=tx.id,
        checkout_request_id=checkout_request_id,
        merchant_request_id="29115-34620561-1",
        phone=tx.phone,
        amount=tx.amount,
        now=now,
    )

"""The notice a user gets when a payment ends: deposit completed, failed or refunded, withdrawal
paid or reversed. Amounts are shown in both currencies (what the user paid or asked, and what it converted
to at the locked rate). Pure: the consumer in workers/notifications.py loads and delivers.

A notice needs six facts of the transaction and the user's contacts, not the aggregates: the
consumer reads `NoticeFacts` in one narrow statement (persistence/payment_notice_reads.py) rather
than the Transaction with its attachments and the User with its devices and KYC snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from domain.payments.status import TransactionStatus, TransactionType
from domain.shared.ids import TransactionId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.email import Email
from domain.user.phone_number import PhoneNumber
from domain.wallet.money import Money

# (type, status reached) -> what happened, in a few words.
NOTIFIED: dict[tuple[TransactionType, TransactionStatus], str] = {
    (TransactionType.DEPOSIT, TransactionStatus.COMPLETED): "deposit completed",
    (TransactionType.DEPOSIT, TransactionStatus.FAILED): "deposit failed",
    # refunded by B2C after review (Deriv refused the transfer for good)
    (TransactionType.DEPOSIT, TransactionStatus.REVERSED): "deposit refunded",
    (TransactionType.WITHDRAWAL, TransactionStatus.COMPLETED): "withdrawal paid",
    (TransactionType.WITHDRAWAL, TransactionStatus.REVERSED): "withdrawal reversed",
}


class NoticeSubject(Protocol):
    """What a notice tells of a transaction (a Transaction is one)."""

    @property
    def id(self) -> TransactionId: ...
    @property
    def type(self) -> TransactionType: ...
    @property
    def amount(self) -> Money: ...
    @property
    def converted_amount(self) -> Money | None: ...
    @property
    def phone(self) -> PhoneNumber: ...  # the M-Pesa number of the payment (shown masked)
    @property
    def deriv_login_id(self) -> DerivLoginId: ...


@dataclass(frozen=True, slots=True)
class NoticeFacts:
    """A transaction's notice facts and its user's contacts, as one read returns them."""

    id: TransactionId
    type: TransactionType
    amount: Money
    converted_amount: Money | None
    phone: PhoneNumber
    deriv_login_id: DerivLoginId
    user_phone: PhoneNumber  # where the SMS goes: the user's number, not the payment's
    user_email: Email
    email_verified: bool


@dataclass(frozen=True, slots=True)
class PaymentNotice:
    kind: str  # a value of NOTIFIED
    subject: str
    sms: str  # one SMS (at most 160 characters for usual ids)
    email: str


def shown(money: Money | None) -> str:
    if money is None:
        return "-"
    return f"{money.currency.value} {Decimal(money.to_decimal_string()):,}"


def notice_for(tx: NoticeSubject, reached: TransactionStatus) -> PaymentNotice | None:
    """The notice for `tx` having reached `reached`, or None when that is not told to users."""
    kind = NOTIFIED.get((tx.type, reached))
    if kind is None:
        return None
    paid, got = shown(tx.amount), shown(tx.converted_amount)
    ref = str(tx.id)
    short = ref[-8:]
    deriv = tx.deriv_login_id.value
    if kind == "deposit completed":
        subject = "Your PenPay deposit is complete"
        line = f"Your deposit of {paid} is complete: {got} credited to Deriv {deriv}."
    elif kind == "deposit failed":
        subject = "Your PenPay deposit did not go through"
        line = f"Your deposit of {paid} ({got}) did not go through; nothing was credited to Deriv {deriv}."
    elif kind == "deposit refunded":
        subject = "Your PenPay deposit was refunded"
        line = (
            f"Deriv {deriv} could not be credited; your {paid} was sent back to M-Pesa {tx.phone.masked()}."
        )
    elif kind == "withdrawal paid":
        subject = "Your PenPay withdrawal is paid"
        line = f"{paid} withdrawn from Deriv {deriv}: {got} paid to your M-Pesa {tx.phone.masked()}."
    else:
        subject = "Your PenPay withdrawal was reversed"
        line = f"M-Pesa could not pay {got}; your {paid} went back to Deriv {deriv}."
    return PaymentNotice(
        kind=kind,
        subject=subject,
        sms=f"PenPay: {line} Ref {short}",
        email=f"{line}\n\nReference: {ref}\n\nPenPay",
    )

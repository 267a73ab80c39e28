"""The notice a user gets when a payment ends: deposit completed, failed or refunded, withdrawal
paid or reversed. Amounts are shown in both currencies (what the user paid or asked, and what it converted
to at the locked rate). Pure: the consumer in workers/notifications.py loads and delivers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from domain.payments.status import TransactionStatus, TransactionType
from domain.payments.transaction import Transaction
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


def notice_for(tx: Transaction, reached: TransactionStatus) -> PaymentNotice | None:
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

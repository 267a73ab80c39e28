"""A deposit whose STK push's answer was lost: what M-Pesa's own records let two people do with it.

The push carried PenPay's AccountReference (`push_reference`, the transaction id's tail); Pull
Transactions lists a paid push's payment under it as the BillRefNumber. A paid push's callback
names the CheckoutRequestID PenPay never received, so it was parked for want of it. Together they
decide (pure: the caller reads the records). The saga looks first, and takes a paid push in
itself (RETRY's rule); what it cannot settle goes to two people:

- FAIL only once the push can no longer be paid (its time is over) and M-Pesa lists no payment
  under its reference; a parked callback of the deposit's phone and amount whose receipt M-Pesa does
  not list yet (its list lags) makes the approval wait.
- RETRY takes in the payment listed under the reference: the parked callback naming its receipt
  gives the push's CheckoutRequestID, recorded as the push's answer; the saga then asks STK Query
  under it before crediting, as for any push. When no callback ever names it, two people may take
  the payment in on the list alone (`listed`), after the same wait as FAIL and only on a receipt no
  other request or paybill payment holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from domain.payments.paybill import visible_digits_agree
from domain.shared.ids import TransactionId
from domain.wallet.money import Money

# M-Pesa's clock and ours may differ: its list is read from a little before the deposit began.
CLOCK_MARGIN = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class PulledPayment:
    """A C2B payment in M-Pesa's list of the STK shortcode (Pull Transactions)."""

    receipt: str
    amount_minor: int
    reference: str  # the BillRefNumber: an STK push's AccountReference


@dataclass(frozen=True, slots=True)
class ParkedPayment:
    """A paid STK callback kept aside because it names a CheckoutRequestID no push of ours holds."""

    checkout_request_id: str
    merchant_request_id: str
    receipt: str
    amount_minor: int | None
    phone_shown: str | None  # as the callback gave it, possibly masked


@dataclass(frozen=True, slots=True)
class LostPushRecords:
    """What M-Pesa's own records show around a push whose answer (its CheckoutRequestID) was lost."""

    pulled: tuple[PulledPayment, ...]  # every payment Pull Transactions lists in the window
    parked: tuple[ParkedPayment, ...]  # paid STK callbacks parked since the push

    def under(self, reference: str) -> tuple[PulledPayment, ...]:
        return tuple(p for p in self.pulled if p.reference.strip().upper() == reference)


def push_reference(transaction_id: TransactionId) -> str:
    """The AccountReference of a deposit's STK push. Daraja allows 12 alphanumerics; the head of a
    UUIDv7 is its timestamp, so the tail is taken."""
    return transaction_id.value.hex[-12:].upper()


@dataclass(frozen=True, slots=True)
class Judgement:
    denial: str | None = None  # M-Pesa's records refuse the action
    wait: str | None = None  # they cannot decide it yet: approve again later
    found: ParkedPayment | None = None  # RETRY: the callback whose CheckoutRequestID is the push's
    # RETRY without a callback: the payment M-Pesa lists under the reference (people only, after
    # the push's time, on a receipt no other record holds)
    listed: PulledPayment | None = None


def judge_fail(records: LostPushRecords, *, reference: str, amount: Money, phone: str) -> Judgement:
    paid = records.under(reference)
    if paid:
        receipts = ", ".join(p.receipt for p in paid)
        return Judgement(
            denial=f"M-Pesa lists {receipts} under this deposit's reference {reference}: the customer "
            "paid (retry the deposit so its payment is taken in)"
        )
    listed = {p.receipt for p in records.pulled}
    for parked in records.parked:
        if parked.receipt in listed or parked.amount_minor != amount.amount_minor:
            continue
        if visible_digits_agree(parked.phone_shown, phone):
            return Judgement(
                wait=f"a parked callback of this phone and amount (receipt {parked.receipt}) is not in "
                "M-Pesa's list yet: it may be this push's"
            )
    return Judgement()


def judge_retry(records: LostPushRecords, *, reference: str, amount: Money) -> Judgement:
    paid = records.under(reference)
    if not paid:
        return Judgement(
            denial=f"M-Pesa lists no payment under this deposit's reference {reference}: nothing to "
            "take in (fail it once the push's time is over)"
        )
    if len(paid) > 1:
        receipts = ", ".join(p.receipt for p in paid)
        return Judgement(denial=f"M-Pesa lists {receipts} under reference {reference}: a person must look")
    [payment] = paid
    if payment.amount_minor != amount.amount_minor:
        listed = Money.of_minor(payment.amount_minor, amount.currency)
        return Judgement(
            denial=f"M-Pesa lists {payment.receipt} of {listed} under reference {reference}, "
            f"not the deposit's {amount}"
        )
    for parked in records.parked:
        if parked.receipt == payment.receipt:
            if parked.amount_minor != amount.amount_minor:
                return Judgement(denial=f"the callback naming {payment.receipt} reports another amount")
            return Judgement(found=parked)
    return Judgement(
        wait=f"M-Pesa lists {payment.receipt} under this deposit's reference, but no callback naming "
        "it has arrived to give the push's CheckoutRequestID",
        listed=payment,
    )

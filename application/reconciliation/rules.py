"""What a difference between a provider, PenPay's evidence and its ledger is: one table, pure rules.

Three records are compared for each money movement: the provider's (a pulled M-Pesa C2B payment, a
line of the Deriv agent's statement, a Transaction Status answer, a balance), PenPay's evidence row
(MpesaRequest, MpesaDisbursement, DerivTransfer, DerivWithdrawal) and the float movement its postings
booked. `classify` names the outcome; `CLASSES` says what each one asks of PenPay.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from application.payments.paybill import Status as PaybillStatus


class ItemClass(StrEnum):
    MATCHED = "MATCHED"
    # money at a provider with no PenPay transaction: booked to SUSPENSE, queued for review
    UNKNOWN_AT_PENPAY = "UNKNOWN_AT_PENPAY"
    # PenPay's evidence says money moved; the provider has no record of it
    MISSING_AT_PROVIDER = "MISSING_AT_PROVIDER"
    # provider, evidence or ledger disagree on the amount or the currency
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    # the amounts agree but the M-Pesa party does not: the visible digits of the (masked) MSISDN the
    # provider shows are not those of the number PenPay holds for it
    PARTY_MISMATCH = "PARTY_MISMATCH"
    # the provider moved the money of one PenPay operation more than once
    DUPLICATE_AT_PROVIDER = "DUPLICATE_AT_PROVIDER"
    # a float's ledger balance is not the provider's balance
    FLOAT_MISMATCH = "FLOAT_MISMATCH"
    # asked (Transaction Status): the answer has not come yet; the next run looks again
    AWAITING_PROVIDER = "AWAITING_PROVIDER"
    # a paybill payment PenPay's confirmation endpoint put in SUSPENSE itself when it arrived: booked
    # once already, and the paybill suspense review owns it
    HELD_IN_SUSPENSE = "HELD_IN_SUSPENSE"


@dataclass(frozen=True)
class ClassRule:
    explained: bool  # nothing for a person to do
    review: bool  # queued for review
    suspense: bool  # booked to SUSPENSE when first seen


CLASSES: dict[ItemClass, ClassRule] = {
    ItemClass.MATCHED: ClassRule(explained=True, review=False, suspense=False),
    ItemClass.AWAITING_PROVIDER: ClassRule(explained=True, review=False, suspense=False),
    ItemClass.HELD_IN_SUSPENSE: ClassRule(explained=True, review=False, suspense=False),
    ItemClass.UNKNOWN_AT_PENPAY: ClassRule(explained=False, review=True, suspense=True),
    ItemClass.MISSING_AT_PROVIDER: ClassRule(explained=False, review=True, suspense=False),
    ItemClass.AMOUNT_MISMATCH: ClassRule(explained=False, review=True, suspense=False),
    ItemClass.PARTY_MISMATCH: ClassRule(explained=False, review=True, suspense=False),
    ItemClass.DUPLICATE_AT_PROVIDER: ClassRule(explained=False, review=True, suspense=False),
    ItemClass.FLOAT_MISMATCH: ClassRule(explained=False, review=True, suspense=False),
}


@dataclass(frozen=True)
class Amount:
    cents: int
    currency: str


@dataclass(frozen=True)
class Comparison:
    """One money movement as each side saw it (None: that side has no record of it)."""

    provider: Amount | None
    evidence: Amount | None
    ledger: Amount | None  # the float movement PenPay booked for it
    provider_copies: int = 1  # how many provider records carry this one operation
    names_penpay_transaction: bool = False  # the provider's record names a PenPay transaction
    awaiting: bool = False  # evidence not settled and the provider was asked just now
    overdue: bool = False  # ... and it has been waiting longer than the grace
    # the evidence is a paybill payment PenPay holds in suspense (no transaction, no float movement
    # of a transaction: the suspense posting booked `evidence`)
    in_suspense: bool = False
    # the visible digits of the provider's party agree with what PenPay holds (or one side shows none)
    party_agrees: bool = True


def classify(c: Comparison) -> ItemClass:
    if c.provider is None:
        if c.evidence is None:
            raise ValueError("nothing to compare")
        if c.awaiting and not c.overdue:
            return ItemClass.AWAITING_PROVIDER
        return ItemClass.MISSING_AT_PROVIDER
    if c.provider_copies > 1:
        return ItemClass.DUPLICATE_AT_PROVIDER
    if c.evidence is None:
        # Even when it names one of our transactions: the ledger does not carry it, suspense does.
        return ItemClass.UNKNOWN_AT_PENPAY
    if c.in_suspense:
        if c.evidence != c.provider:
            return ItemClass.AMOUNT_MISMATCH
        return ItemClass.HELD_IN_SUSPENSE if c.party_agrees else ItemClass.PARTY_MISMATCH
    if c.evidence != c.provider or c.ledger != c.provider:
        return ItemClass.AMOUNT_MISMATCH
    return ItemClass.MATCHED if c.party_agrees else ItemClass.PARTY_MISMATCH


def held_in_suspense(paybill_status: str | None) -> bool:
    """Whether PenPay's paybill endpoints booked a C2B payment to SUSPENSE themselves (its c2b_payments
    status). A DEPOSIT is explained by its MpesaRequest (receipt = TransID) instead; VALIDATED or
    REFUSED means only the validation reached PenPay, never the confirmation: the money is unknown.
    A REFUNDED payment was held in suspense until M-Pesa reversed it: its row explains it too."""
    return paybill_status in (PaybillStatus.SUSPENSE, PaybillStatus.REFUNDED)


def sum_balances(balances: dict[str, Amount]) -> Amount:
    """The float as the provider holds it across its accounts (one currency: M-Pesa's are all KES)."""
    currencies = {a.currency for a in balances.values()}
    if len(currencies) != 1:
        raise ValueError(f"balances in {sorted(currencies) or 'no currency'} cannot make one float")
    return Amount(sum(a.cents for a in balances.values()), currencies.pop())


def classify_float(provider: Amount, ledger: Amount) -> ItemClass:
    return ItemClass.MATCHED if provider == ledger else ItemClass.FLOAT_MISMATCH


def unexplained(classes: list[ItemClass]) -> int:
    return sum(1 for c in classes if not CLASSES[c].explained)

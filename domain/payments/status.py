"""Transaction types, statuses and THE transition table (the only place legal moves live).

OUTCOME_UNKNOWN means "we sent a call that may have moved money and got no answer".
It is left only by evidence (a callback, a status query, a statement) or by review;
which exits are sensible depends on the step that went unknown, see OUTCOME_RESOLUTIONS.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from domain.payments.errors import IllegalTransition


class TransactionType(StrEnum):
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"


class TransactionStatus(StrEnum):
    PENDING = "PENDING"
    # Deposit
    AWAITING_MPESA = "AWAITING_MPESA"  # STK push accepted, waiting for the customer to pay
    MPESA_CONFIRMED = "MPESA_CONFIRMED"  # M-Pesa callback says paid
    DERIV_TRANSFER_SENT = "DERIV_TRANSFER_SENT"  # paymentagent_transfer recorded and sent
    # Withdrawal
    AWAITING_WITHDRAWAL_CODE = "AWAITING_WITHDRAWAL_CODE"  # Deriv emailed the user a code
    DERIV_WITHDRAWAL_DONE = "DERIV_WITHDRAWAL_DONE"  # Deriv debited the user's account
    MPESA_DISBURSEMENT_SENT = "MPESA_DISBURSEMENT_SENT"  # B2C payment recorded and sent
    # Both
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    NEEDS_REVIEW = "NEEDS_REVIEW"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REVERSED = "REVERSED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {TransactionStatus.COMPLETED, TransactionStatus.FAILED, TransactionStatus.REVERSED}
)

S = TransactionStatus

_DEPOSIT_TRANSITIONS = frozenset(
    {
        # happy path
        (S.PENDING, S.AWAITING_MPESA),
        (S.AWAITING_MPESA, S.MPESA_CONFIRMED),
        (S.MPESA_CONFIRMED, S.DERIV_TRANSFER_SENT),
        (S.DERIV_TRANSFER_SENT, S.COMPLETED),
        # no money moved: refused STK push, customer cancelled or did not pay
        (S.PENDING, S.FAILED),
        (S.AWAITING_MPESA, S.FAILED),
        # a call went out with no answer: STK push, waiting for the callback, Deriv transfer
        (S.PENDING, S.OUTCOME_UNKNOWN),
        (S.AWAITING_MPESA, S.OUTCOME_UNKNOWN),
        (S.DERIV_TRANSFER_SENT, S.OUTCOME_UNKNOWN),
        # resolutions of OUTCOME_UNKNOWN
        (S.OUTCOME_UNKNOWN, S.MPESA_CONFIRMED),  # M-Pesa paid; or Deriv transfer proven absent: resend
        (S.OUTCOME_UNKNOWN, S.FAILED),  # M-Pesa proven unpaid
        (S.OUTCOME_UNKNOWN, S.COMPLETED),  # Deriv transfer proven done
        (S.OUTCOME_UNKNOWN, S.NEEDS_REVIEW),
        # M-Pesa paid but Deriv cannot be funded (refused for good): a human decides
        (S.MPESA_CONFIRMED, S.NEEDS_REVIEW),
        (S.DERIV_TRANSFER_SENT, S.NEEDS_REVIEW),
        # operator resolutions
        (S.NEEDS_REVIEW, S.COMPLETED),
        (S.NEEDS_REVIEW, S.REVERSED),  # customer refunded
        (S.NEEDS_REVIEW, S.FAILED),  # proven that no money moved
        (S.NEEDS_REVIEW, S.OUTCOME_UNKNOWN),  # a stuck step retried: resolved again, same ids
    }
)

_WITHDRAWAL_TRANSITIONS = frozenset(
    {
        # happy path
        (S.PENDING, S.AWAITING_WITHDRAWAL_CODE),
        (S.AWAITING_WITHDRAWAL_CODE, S.DERIV_WITHDRAWAL_DONE),
        (S.DERIV_WITHDRAWAL_DONE, S.MPESA_DISBURSEMENT_SENT),
        (S.MPESA_DISBURSEMENT_SENT, S.COMPLETED),
        # no money moved: code never sent, wrong or expired code, Deriv refused the debit
        (S.PENDING, S.FAILED),
        (S.AWAITING_WITHDRAWAL_CODE, S.FAILED),
        # a call went out with no answer: Deriv withdrawal, B2C payment
        (S.AWAITING_WITHDRAWAL_CODE, S.OUTCOME_UNKNOWN),
        (S.MPESA_DISBURSEMENT_SENT, S.OUTCOME_UNKNOWN),
        # resolutions of OUTCOME_UNKNOWN
        (S.OUTCOME_UNKNOWN, S.DERIV_WITHDRAWAL_DONE),  # Deriv debited; or B2C proven unpaid: resend
        (S.OUTCOME_UNKNOWN, S.FAILED),  # Deriv proven not debited
        (S.OUTCOME_UNKNOWN, S.COMPLETED),  # B2C proven paid
        (S.OUTCOME_UNKNOWN, S.REVERSED),  # B2C proven failed and the USD sent back to Deriv
        (S.OUTCOME_UNKNOWN, S.NEEDS_REVIEW),
        # B2C failed on PenPay's side (e.g. float too low): send it again
        (S.MPESA_DISBURSEMENT_SENT, S.DERIV_WITHDRAWAL_DONE),
        # B2C failed for good: the USD goes back to the user's Deriv account first
        (S.DERIV_WITHDRAWAL_DONE, S.REVERSED),
        (S.MPESA_DISBURSEMENT_SENT, S.REVERSED),
        (S.DERIV_WITHDRAWAL_DONE, S.NEEDS_REVIEW),  # ... and if that refund fails, a human decides
        (S.MPESA_DISBURSEMENT_SENT, S.NEEDS_REVIEW),
        # operator resolutions
        (S.NEEDS_REVIEW, S.COMPLETED),
        (S.NEEDS_REVIEW, S.REVERSED),
        (S.NEEDS_REVIEW, S.FAILED),
        (S.NEEDS_REVIEW, S.OUTCOME_UNKNOWN),  # a stuck step retried: resolved again, same ids
    }
)

TRANSITIONS: Mapping[TransactionType, frozenset[tuple[TransactionStatus, TransactionStatus]]] = (
    MappingProxyType(
        {TransactionType.DEPOSIT: _DEPOSIT_TRANSITIONS, TransactionType.WITHDRAWAL: _WITHDRAWAL_TRANSITIONS}
    )
)

# Which exits of OUTCOME_UNKNOWN make sense, by the status the transaction was in when
# the outcome went unknown (e.g. a lost Deriv-transfer answer cannot end as FAILED:
# the customer has already paid through M-Pesa).
OUTCOME_RESOLUTIONS: Mapping[TransactionStatus, frozenset[TransactionStatus]] = MappingProxyType(
    {
        # No STK answer means no CheckoutRequestID: a callback cannot be matched to it.
        S.PENDING: frozenset({S.FAILED, S.NEEDS_REVIEW}),
        S.AWAITING_MPESA: frozenset({S.MPESA_CONFIRMED, S.FAILED, S.NEEDS_REVIEW}),
        S.DERIV_TRANSFER_SENT: frozenset({S.MPESA_CONFIRMED, S.COMPLETED, S.NEEDS_REVIEW}),
        S.AWAITING_WITHDRAWAL_CODE: frozenset({S.DERIV_WITHDRAWAL_DONE, S.FAILED, S.NEEDS_REVIEW}),
        S.MPESA_DISBURSEMENT_SENT: frozenset(
            {S.DERIV_WITHDRAWAL_DONE, S.COMPLETED, S.REVERSED, S.NEEDS_REVIEW}
        ),
    }
)

del S


def is_legal_transition(type_: TransactionType, from_: TransactionStatus, to: TransactionStatus) -> bool:
    return (from_, to) in TRANSITIONS[type_]


def assert_transition(type_: TransactionType, from_: TransactionStatus, to: TransactionStatus) -> None:
    if not is_legal_transition(type_, from_, to):
        raise IllegalTransition(f"a {type_.value} transaction cannot go from {from_.value} to {to.value}")

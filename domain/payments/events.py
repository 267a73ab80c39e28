"""Events of the payments context. Every one carries the transaction's version after the
change, so a consumer can drop an event older than the state it has already seen."""

from __future__ import annotations

from dataclasses import dataclass

from domain.payments.status import TransactionStatus, TransactionType
from domain.shared.events import DomainEvent
from domain.shared.ids import TransactionId, UserId
from domain.wallet.money import Money


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionEvent(DomainEvent):
    aggregate_type = "Transaction"

    transaction_id: TransactionId
    version: int
    # The commit that recorded this event moved the transaction on past it: a later status change
    # (this is an earlier one), or to an end (COMPLETED, FAILED, REVERSED). What comes next is
    # judged on that later state, so a consumer that only "looks again" skips this one.
    moved_on: bool = False

    def aggregate_id(self) -> str:
        return str(self.transaction_id)

    def aggregate_version(self) -> int | None:
        return self.version


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionCreated(TransactionEvent):
    user_id: UserId
    type: TransactionType
    status: TransactionStatus
    amount: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class DepositInitiated(TransactionEvent):
    user_id: UserId
    amount: Money  # KES the customer pays
    converted_amount: Money  # USD for the Deriv account
    rate_quote_id: str
    # The InitiateDeposit that created it sends the STK push itself (its intent committed with the
    # deposit): nothing waits on this event to push. False: the saga sends it (older events too).
    pushed_by_initiator: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawalInitiated(TransactionEvent):
    user_id: UserId
    amount: Money  # USD taken from Deriv
    converted_amount: Money  # KES paid out by M-Pesa
    rate_quote_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionStatusChanged(TransactionEvent):
    from_status: TransactionStatus
    to_status: TransactionStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class MpesaCallbackReceived(TransactionEvent):
    """M-Pesa's callback recorded the first result of a request (SUCCEEDED or FAILED evidence): an
    STK callback (checkout_request_id) or a B2C result (originator_conversation_id; its receipt is
    the TransactionReceipt). The saga cross-checks it (STK Query, Transaction Status) before acting.
    result_code None: a code no integer holds."""

    checkout_request_id: str | None = None
    originator_conversation_id: str | None = None
    result_code: int | None
    mpesa_receipt_number: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MpesaDisbursementCompleted(TransactionEvent):
    """The B2C payout is proven made (its evidence CONFIRMED): raised once per payout, by the
    Transaction Status answer that confirmed it, or by the saga when it confirms it otherwise."""

    originator_conversation_id: str
    transaction_receipt: str | None
    amount: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class MpesaDisbursementOutcomeUnknown(TransactionEvent):
    """B2C queue timeout: the payout may or may not have happened; Transaction Status decides."""

    originator_conversation_id: str
    result_code: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MpesaDisbursementFailed(TransactionEvent):
    """Transaction Status says the payout was not made (Cancelled, Declined, Expired, Failed)."""

    originator_conversation_id: str
    transaction_status: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DerivTransferCompleted(TransactionEvent):
    deriv_transaction_id: int
    amount: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionCompleted(TransactionEvent):
    type: TransactionType


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionFailed(TransactionEvent):
    type: TransactionType
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NeedsReview(TransactionEvent):
    type: TransactionType
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundRequested(TransactionEvent):
    """Two people approved giving a deposit's KES back by B2C; the intent is committed."""

    originator_conversation_id: str
    amount: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewRetryApproved(TransactionEvent):
    """Two people approved running a stuck saga step again."""

    step: str

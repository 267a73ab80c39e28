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
    """An STK callback recorded the first result of the push (SUCCEEDED or FAILED evidence); the
    saga cross-checks it with STK Query before crediting. result_code None: a code no integer holds."""

    checkout_request_id: str
    result_code: int | None
    mpesa_receipt_number: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MpesaDisbursementCompleted(TransactionEvent):
    originator_conversation_id: str
    transaction_receipt: str | None
    amount: Money


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

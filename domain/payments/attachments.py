"""Evidence records (PEC 3.1.6): what was asked of, and answered by, M-Pesa and Deriv.

Each is attached to one Transaction (one row per transaction in its own table). They are
immutable; an update is a new value made with the `with_*` methods.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.payments.errors import InvalidEvidence
from domain.shared.clock import require_utc
from domain.shared.ids import TransactionId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.phone_number import PhoneNumber
from domain.wallet.errors import CurrencyMismatch
from domain.wallet.money import Currency, Money
from domain.wallet.mpesa_rules import require_whole_shillings


class EvidenceStatus(StrEnum):
    SENT = "SENT"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    # Written by the M-Pesa callback inbox, which trusts no callback on its own:
    SUCCEEDED = "SUCCEEDED"  # a callback says paid; not yet cross-checked by a query
    UNKNOWN = "UNKNOWN"  # B2C queue timeout: the payout may or may not have happened
    REVIEW = "REVIEW"  # callback and query disagree, or the callback did not match: a person decides


def _check_common(record: object, amount: Money, currency: Currency, status: str) -> None:
    if amount.currency is not currency:
        raise CurrencyMismatch(f"{type(record).__name__} is in {currency}, not {amount.currency}")
    if not amount.is_positive():
        raise InvalidEvidence(f"{type(record).__name__} amount must be positive", field="amount")
    if status not in EvidenceStatus.__members__:
        raise InvalidEvidence(f"status must be one of {', '.join(EvidenceStatus)}", field="status")


def _check_times(record: object) -> None:
    for name in ("created_at", "updated_at"):
        object.__setattr__(record, name, require_utc(getattr(record, name), name))


def _required_text(value: str, name: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise InvalidEvidence(f"{name} must be 1 to 64 characters", field=name)


@dataclass(frozen=True, slots=True, kw_only=True)
class MpesaRequest:
    """An STK push (deposit) and, once it arrives, its callback."""

    transaction_id: TransactionId
    checkout_request_id: str
    merchant_request_id: str
    phone: PhoneNumber
    amount: Money
    status: str
    result_code: int | None = None
    result_desc: str | None = None
    mpesa_receipt_number: str | None = None
    raw_callback: str | None = None
    created_at: datetime
    updated_at: datetime

    def __post_init__(self) -> None:
        _check_common(self, self.amount, Currency.KES, self.status)
        require_whole_shillings(self.amount)
        _required_text(self.checkout_request_id, "checkout_request_id")
        _required_text(self.merchant_request_id, "merchant_request_id")
        _check_times(self)

    @classmethod
    def sent(
        cls,
        *,
        transaction_id: TransactionId,
        checkout_request_id: str,
        merchant_request_id: str,
        phone: PhoneNumber,
        amount: Money,
        now: datetime,
    ) -> MpesaRequest:
        return cls(
            transaction_id=transaction_id,
            checkout_request_id=checkout_request_id,
            merchant_request_id=merchant_request_id,
            phone=phone,
            amount=amount,
            status=EvidenceStatus.SENT,
            created_at=now,
            updated_at=now,
        )

    @classmethod
    def paid_without_push_answer(
        cls,
        *,
        transaction_id: TransactionId,
        checkout_request_id: str,  # a stand-in: C2B-<TransID>, PULL-<receipt>
        merchant_request_id: str,
        phone: PhoneNumber,
        amount: Money,
        receipt: str,
        result_desc: str,
        raw_callback: str | None,
        now: datetime,
    ) -> MpesaRequest:
        """A payment M-Pesa proved by other means than an STK push's answer (a paybill
        confirmation, its list of payments): CONFIRMED from the start."""
        sent = cls.sent(
            transaction_id=transaction_id,
            checkout_request_id=checkout_request_id,
            merchant_request_id=merchant_request_id,
            phone=phone,
            amount=amount,
            now=now,
        )
        return sent.with_callback(
            result_code=0,
            result_desc=result_desc,
            mpesa_receipt_number=receipt,
            raw_callback=raw_callback,
            now=now,
        )

    def with_callback(
        self,
        *,
        result_code: int,
        result_desc: str | None,
        mpesa_receipt_number: str | None,
        raw_callback: str | None,
        now: datetime,
    ) -> MpesaRequest:
        status = EvidenceStatus.CONFIRMED if result_code == 0 else EvidenceStatus.FAILED
        return dataclasses.replace(
            self,
            status=status,
            result_code=result_code,
            result_desc=result_desc,
            mpesa_receipt_number=mpesa_receipt_number,
            raw_callback=raw_callback,
            updated_at=now,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MpesaDisbursement:
    """A B2C payment (withdrawal) and, once it arrives, its result."""

    transaction_id: TransactionId
    originator_conversation_id: str
    conversation_id: str | None = None
    phone: PhoneNumber
    amount: Money
    status: str
    result_code: int | None = None
    result_desc: str | None = None
    transaction_receipt: str | None = None
    raw_result: str | None = None
    created_at: datetime
    updated_at: datetime

    def __post_init__(self) -> None:
        _check_common(self, self.amount, Currency.KES, self.status)
        require_whole_shillings(self.amount)
        _required_text(self.originator_conversation_id, "originator_conversation_id")
        _check_times(self)

    @classmethod
    def sent(
        cls,
        *,
        transaction_id: TransactionId,
        originator_conversation_id: str,
        conversation_id: str | None,
        phone: PhoneNumber,
        amount: Money,
        now: datetime,
    ) -> MpesaDisbursement:
        return cls(
            transaction_id=transaction_id,
            originator_conversation_id=originator_conversation_id,
            conversation_id=conversation_id,
            phone=phone,
            amount=amount,
            status=EvidenceStatus.SENT,
            created_at=now,
            updated_at=now,
        )

    def with_result(
        self,
        *,
        result_code: int,
        result_desc: str | None,
        transaction_receipt: str | None,
        raw_result: str | None,
        now: datetime,
    ) -> MpesaDisbursement:
        status = EvidenceStatus.CONFIRMED if result_code == 0 else EvidenceStatus.FAILED
        return dataclasses.replace(
            self,
            status=status,
            result_code=result_code,
            result_desc=result_desc,
            transaction_receipt=transaction_receipt,
            raw_result=raw_result,
            updated_at=now,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DerivTransfer:
    """A paymentagent_transfer funding the user's Deriv account (deposit).

    transfer_id is the PenPay transaction id, written into Deriv's description, so a
    lost answer can be matched against the agent's Deriv statement.
    """

    transaction_id: TransactionId
    transfer_id: str
    client_loginid: DerivLoginId
    amount: Money
    deriv_transaction_id: int | None = None
    status: str
    created_at: datetime
    updated_at: datetime

    def __post_init__(self) -> None:
        _check_common(self, self.amount, Currency.USD, self.status)
        if self.transfer_id != str(self.transaction_id):
            raise InvalidEvidence("transfer_id must be the PenPay transaction id", field="transfer_id")
        _check_times(self)

    @classmethod
    def sent(
        cls, *, transaction_id: TransactionId, client_loginid: DerivLoginId, amount: Money, now: datetime
    ) -> DerivTransfer:
        return cls(
            transaction_id=transaction_id,
            transfer_id=str(transaction_id),
            client_loginid=client_loginid,
            amount=amount,
            status=EvidenceStatus.SENT,
            created_at=now,
            updated_at=now,
        )

    def confirmed(self, *, deriv_transaction_id: int, now: datetime) -> DerivTransfer:
        return dataclasses.replace(
            self, status=EvidenceStatus.CONFIRMED, deriv_transaction_id=deriv_transaction_id, updated_at=now
        )

    def failed(self, *, now: datetime) -> DerivTransfer:
        return dataclasses.replace(self, status=EvidenceStatus.FAILED, updated_at=now)


@dataclass(frozen=True, slots=True, kw_only=True)
class DerivWithdrawal:
    """A paymentagent_withdraw debiting the user's Deriv account (withdrawal)."""

    transaction_id: TransactionId
    client_loginid: DerivLoginId
    amount: Money
    deriv_transaction_id: int | None = None
    status: str
    created_at: datetime
    updated_at: datetime

    def __post_init__(self) -> None:
        _check_common(self, self.amount, Currency.USD, self.status)
        _check_times(self)

    @classmethod
    def sent(
        cls, *, transaction_id: TransactionId, client_loginid: DerivLoginId, amount: Money, now: datetime
    ) -> DerivWithdrawal:
        return cls(
            transaction_id=transaction_id,
            client_loginid=client_loginid,
            amount=amount,
            status=EvidenceStatus.SENT,
            created_at=now,
            updated_at=now,
        )

    def confirmed(self, *, deriv_transaction_id: int, now: datetime) -> DerivWithdrawal:
        return dataclasses.replace(
            self, status=EvidenceStatus.CONFIRMED, deriv_transaction_id=deriv_transaction_id, updated_at=now
        )

    def failed(self, *, now: datetime) -> DerivWithdrawal:
        return dataclasses.replace(self, status=EvidenceStatus.FAILED, updated_at=now)

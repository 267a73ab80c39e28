"""Transaction aggregate (PEC 3.1.5, 3.3.2): one deposit or withdrawal, start to end.

Every status change goes through status.assert_transition (the one table) and records
TransactionStatusChanged; `version` grows by one per change, and every event carries it.
Evidence records are attached BEFORE the external call where the id is ours (Deriv
transfer, B2C), so a crash between call and answer still leaves something to reconcile.

`failure_reason` holds the reason of the latest move to OUTCOME_UNKNOWN, NEEDS_REVIEW,
FAILED or REVERSED; it is not cleared when that problem is later resolved.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

from domain.payments.attachments import (
    DerivTransfer,
    DerivWithdrawal,
    EvidenceStatus,
    MpesaDisbursement,
    MpesaRequest,
)
from domain.payments.b2c_evidence import (
    B2CResultEvidence,
    B2CTimeoutEvidence,
    PayoutEffect,
    PayoutJudgement,
    StatusAnswer,
    apply_b2c_result,
    apply_b2c_timeout,
    apply_status_answer,
    judge_b2c_result,
    judge_b2c_timeout,
    judge_status_answer,
)
from domain.payments.errors import AmountMismatch, IllegalTransition, InvalidEvidence
from domain.payments.events import (
    DepositInitiated,
    DerivTransferCompleted,
    MpesaCallbackReceived,
    MpesaDisbursementCompleted,
    MpesaDisbursementFailed,
    MpesaDisbursementOutcomeUnknown,
    NeedsReview,
    RefundRequested,
    ReviewRetryApproved,
    TransactionCompleted,
    TransactionCreated,
    TransactionEvent,
    TransactionFailed,
    TransactionStatusChanged,
    WithdrawalInitiated,
)
from domain.payments.idempotency import IdempotencyKey
from domain.payments.status import (
    OUTCOME_RESOLUTIONS,
    TransactionStatus,
    TransactionType,
    assert_transition,
)
from domain.payments.stk_evidence import (
    CallbackEffect,
    CallbackJudgement,
    QueryEffect,
    StkCallbackEvidence,
    StkQueryAnswer,
    apply_stk_callback,
    apply_stk_query,
    judge_stk_callback,
    judge_stk_query,
)
from domain.shared.clock import require_utc, utc_now
from domain.shared.events import DomainEvent
from domain.shared.ids import TransactionId, UserId
from domain.user.deriv_login_id import DerivLoginId
from domain.user.phone_number import PhoneNumber
from domain.wallet.errors import CurrencyMismatch, InvalidAmount
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money
from domain.wallet.mpesa_rules import require_mpesa_amount

Status = TransactionStatus
MAX_REASON_LENGTH = 255
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

# What the user asks for, and what it converts to, by flow.
_ASKED_CURRENCY = {TransactionType.DEPOSIT: Currency.KES, TransactionType.WITHDRAWAL: Currency.USD}
_CONVERTED_CURRENCY = {TransactionType.DEPOSIT: Currency.USD, TransactionType.WITHDRAWAL: Currency.KES}


class _EventEnvelope(TypedDict):
    transaction_id: TransactionId
    version: int
    occurred_at: datetime


def _at(now: datetime | None) -> datetime:
    return utc_now() if now is None else require_utc(now, "now")


def _reason(text: str) -> str:
    # A note for people (often a gateway's error text): cut to fit the column, never refuse.
    cleaned = " ".join(str(text).split())
    return (cleaned or "unspecified")[:MAX_REASON_LENGTH]


# The MpesaRequest of a paybill deposit has no CheckoutRequestID: it holds this and the TransID.
PAYBILL_REQUEST_PREFIX = "C2B-"
# Nor has a lost push's, taken in by two people on M-Pesa's list alone: this and the receipt.
LISTED_REQUEST_PREFIX = "PULL-"


@dataclass(eq=False, kw_only=True)
class Transaction:
    id: TransactionId
    user_id: UserId
    type: TransactionType
    status: TransactionStatus
    amount: Money
    idempotency_key_hash: str
    locked_rate: LockedRate | None
    converted_amount: Money | None
    phone: PhoneNumber
    deriv_login_id: DerivLoginId
    failure_reason: str | None = None
    version: int = 1
    created_at: datetime
    updated_at: datetime
    mpesa_request: MpesaRequest | None = None
    mpesa_disbursement: MpesaDisbursement | None = None
    deriv_transfer: DerivTransfer | None = None
    deriv_withdrawal: DerivWithdrawal | None = None
    _pending_events: list[DomainEvent] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.amount.currency is not _ASKED_CURRENCY[self.type]:
            raise CurrencyMismatch(f"a {self.type.value} is asked in {_ASKED_CURRENCY[self.type]}")
        if not self.amount.is_positive():
            raise InvalidAmount(f"a transaction moves a positive amount, got {self.amount}")
        if (
            self.converted_amount is not None
            and self.converted_amount.currency is not _CONVERTED_CURRENCY[self.type]
        ):
            raise CurrencyMismatch(f"a {self.type.value} converts to {_CONVERTED_CURRENCY[self.type]}")
        if not _SHA256_HEX.fullmatch(self.idempotency_key_hash):
            raise InvalidEvidence(
                "idempotency_key_hash must be a SHA-256 hex digest", field="idempotency_key"
            )
        is_deposit = self.type is TransactionType.DEPOSIT
        if not is_deposit and (self.mpesa_request or self.deriv_transfer):
            raise InvalidEvidence("a withdrawal has no STK push or Deriv transfer")
        if is_deposit and self.deriv_withdrawal:
            raise InvalidEvidence("a deposit has no Deriv withdrawal")
        if is_deposit and self.mpesa_disbursement and self.mpesa_disbursement.amount != self.amount:
            raise InvalidEvidence("a deposit's B2C payment is the refund of its KES, in full")
        for record in (
            self.mpesa_request,
            self.mpesa_disbursement,
            self.deriv_transfer,
            self.deriv_withdrawal,
        ):
            if record is not None and record.transaction_id != self.id:
                raise InvalidEvidence(f"{type(record).__name__} belongs to another transaction")
        self.created_at = require_utc(self.created_at, "created_at")
        self.updated_at = require_utc(self.updated_at, "updated_at")

    # --- creation ---------------------------------------------------------------------------

    @classmethod
    def start_deposit(
        cls,
        *,
        user_id: UserId,
        amount: Money,
        idempotency_key: IdempotencyKey,
        locked_rate: LockedRate,
        phone: PhoneNumber,
        deriv_login_id: DerivLoginId,
        now: datetime | None = None,
        pushed_by_initiator: bool = False,
    ) -> Transaction:
        """KES paid by STK push (whole shillings, M-Pesa limits) becomes USD on Deriv.
        `pushed_by_initiator`: the caller sends the push itself, its intent committed with the
        deposit (said in DepositInitiated, so no saga worker is woken to send it)."""
        require_mpesa_amount(amount)
        return cls._start(
            TransactionType.DEPOSIT,
            user_id,
            amount,
            idempotency_key,
            locked_rate,
            phone,
            deriv_login_id,
            now,
            pushed_by_initiator=pushed_by_initiator,
        )

    @classmethod
    def start_paybill_deposit(
        cls,
        *,
        user_id: UserId,
        amount: Money,
        idempotency_key: IdempotencyKey,
        locked_rate: LockedRate,
        phone: PhoneNumber,
        deriv_login_id: DerivLoginId,
        mpesa_receipt_number: str,
        shortcode: str,
        raw_confirmation: str | None,
        now: datetime | None = None,
    ) -> Transaction:
        """KES the customer already paid to the paybill (C2B) becomes USD on Deriv. The M-Pesa side
        is over before the transaction exists: it starts AWAITING_MPESA with its payment CONFIRMED
        (the receipt is the M-Pesa TransID), and the saga carries on from the credit exactly as for
        an STK deposit. `phone` is the user's own number: the payer's is masked, never a key."""
        tx = cls.start_deposit(
            user_id=user_id,
            amount=amount,
            idempotency_key=idempotency_key,
            locked_rate=locked_rate,
            phone=phone,
            deriv_login_id=deriv_login_id,
            now=now,
        )
        at = tx.created_at
        tx.mpesa_request = MpesaRequest.paid_without_push_answer(
            transaction_id=tx.id,
            checkout_request_id=f"{PAYBILL_REQUEST_PREFIX}{mpesa_receipt_number}",
            merchant_request_id=shortcode,
            phone=phone,
            amount=amount,
            receipt=mpesa_receipt_number,
            result_desc="paybill payment confirmed",
            raw_callback=raw_confirmation,
            now=at,
        )
        tx._move_to(Status.AWAITING_MPESA, at)
        return tx

    @classmethod
    def start_withdrawal(
        cls,
        *,
        user_id: UserId,
        amount: Money,
        idempotency_key: IdempotencyKey,
        locked_rate: LockedRate,
        phone: PhoneNumber,
        deriv_login_id: DerivLoginId,
        now: datetime | None = None,
    ) -> Transaction:
        """USD taken from Deriv becomes whole KES paid out by B2C (within M-Pesa limits)."""
        if amount.currency is not Currency.USD:
            raise CurrencyMismatch(f"a withdrawal is asked in USD, not {amount.currency}")
        return cls._start(
            TransactionType.WITHDRAWAL,
            user_id,
            amount,
            idempotency_key,
            locked_rate,
            phone,
            deriv_login_id,
            now,
        )

    @classmethod
    def _start(
        cls,
        type_: TransactionType,
        user_id: UserId,
        amount: Money,
        idempotency_key: IdempotencyKey,
        locked_rate: LockedRate,
        phone: PhoneNumber,
        deriv_login_id: DerivLoginId,
        now: datetime | None,
        *,
        pushed_by_initiator: bool = False,
    ) -> Transaction:
        at = _at(now)
        phone.require_mpesa_kenya()
        deriv_login_id.require_real_money()
        if locked_rate.quote is not _CONVERTED_CURRENCY[type_]:
            raise CurrencyMismatch(
                f"a {type_.value} needs a rate into {_CONVERTED_CURRENCY[type_]}", field="rate"
            )
        if type_ is TransactionType.DEPOSIT:
            converted = locked_rate.convert(amount, at=at).target
        else:
            # M-Pesa pays whole shillings: round down to them, never up.
            converted = require_mpesa_amount(locked_rate.convert_to_whole_units(amount, at=at).target)
        if not converted.is_positive():
            raise InvalidAmount(f"{amount} is too small: it converts to {converted}")
        tx = cls(
            id=TransactionId.new(),
            user_id=user_id,
            type=type_,
            status=Status.PENDING,
            amount=amount,
            idempotency_key_hash=idempotency_key.hash_hex,
            locked_rate=locked_rate,
            converted_amount=converted,
            phone=phone,
            deriv_login_id=deriv_login_id,
            created_at=at,
            updated_at=at,
        )
        common = tx._common(at)
        tx._record(TransactionCreated(**common, user_id=user_id, type=type_, status=tx.status, amount=amount))
        quote = locked_rate.quote_id
        if type_ is TransactionType.DEPOSIT:
            tx._record(
                DepositInitiated(
                    **common,
                    user_id=user_id,
                    amount=amount,
                    converted_amount=converted,
                    rate_quote_id=quote,
                    pushed_by_initiator=pushed_by_initiator,
                )
            )
        else:
            tx._record(
                WithdrawalInitiated(
                    **common, user_id=user_id, amount=amount, converted_amount=converted, rate_quote_id=quote
                )
            )
        return tx

    @classmethod
    def reconstitute(
        cls,
        *,
        id: TransactionId,
        user_id: UserId,
        type: TransactionType,
        status: TransactionStatus,
        amount: Money,
        idempotency_key_hash: str,
        locked_rate: LockedRate | None,
        converted_amount: Money | None,
        phone: PhoneNumber,
        deriv_login_id: DerivLoginId,
        failure_reason: str | None,
        version: int,
        created_at: datetime,
        updated_at: datetime,
        mpesa_request: MpesaRequest | None = None,
        mpesa_disbursement: MpesaDisbursement | None = None,
        deriv_transfer: DerivTransfer | None = None,
        deriv_withdrawal: DerivWithdrawal | None = None,
    ) -> Transaction:
        """Rebuild from storage; raises no events."""
        return cls(
            id=id,
            user_id=user_id,
            type=type,
            status=status,
            amount=amount,
            idempotency_key_hash=idempotency_key_hash,
            locked_rate=locked_rate,
            converted_amount=converted_amount,
            phone=phone,
            deriv_login_id=deriv_login_id,
            failure_reason=failure_reason,
            version=version,
            created_at=created_at,
            updated_at=updated_at,
            mpesa_request=mpesa_request,
            mpesa_disbursement=mpesa_disbursement,
            deriv_transfer=deriv_transfer,
            deriv_withdrawal=deriv_withdrawal,
        )

    # --- queries ----------------------------------------------------------------------------

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def outcome_unknown_step(self) -> TransactionStatus | None:
        """While OUTCOME_UNKNOWN: the step whose answer was lost, read from the evidence
        attached so far (so it needs no column of its own)."""
        if self.status is not Status.OUTCOME_UNKNOWN:
            return None
        if self.type is TransactionType.DEPOSIT:
            if self.deriv_transfer is not None:
                return Status.DERIV_TRANSFER_SENT
            return Status.AWAITING_MPESA if self.mpesa_request is not None else Status.PENDING
        if self.mpesa_disbursement is not None:
            return Status.MPESA_DISBURSEMENT_SENT
        return Status.AWAITING_WITHDRAWAL_CODE

    # --- deposit flow -----------------------------------------------------------------------

    def stk_push_sent(self, mpesa_request: MpesaRequest, *, now: datetime | None = None) -> None:
        """M-Pesa accepted the STK push: wait for the customer to pay."""
        self._require_type(TransactionType.DEPOSIT)
        if mpesa_request.transaction_id != self.id:
            raise InvalidEvidence("the STK push belongs to another transaction")
        if mpesa_request.amount != self.amount or mpesa_request.phone != self.phone:
            raise InvalidEvidence("the STK push must ask this transaction's phone for its amount")
        at = _at(now)
        self._move_to(Status.AWAITING_MPESA, at)
        self.mpesa_request = mpesa_request

    def mpesa_confirmed(
        self,
        *,
        mpesa_receipt_number: str | None,
        amount: Money,
        raw_callback: str | None,
        result_desc: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """The payment is proven (callback and STK Query agree, or the query alone): credit it.
        A repeat changes nothing. MpesaCallbackReceived was raised when the callback came."""
        request = self._require_mpesa_request()
        if self.status not in (Status.AWAITING_MPESA, Status.OUTCOME_UNKNOWN):
            if request.status == EvidenceStatus.CONFIRMED:
                return  # a repeat of the confirmation already applied
        if amount != self.amount:
            raise AmountMismatch(f"M-Pesa reports {amount} paid for a request of {self.amount}")
        at = _at(now)
        confirmed = request.with_callback(
            result_code=0,
            result_desc=result_desc,
            mpesa_receipt_number=mpesa_receipt_number,
            raw_callback=raw_callback,
            now=at,
        )
        self._move_to(Status.MPESA_CONFIRMED, at)
        self.mpesa_request = confirmed

    def mpesa_failed(
        self,
        *,
        result_code: int,
        result_desc: str | None,
        raw_callback: str | None,
        now: datetime | None = None,
    ) -> None:
        """The payment is proven not made (cancelled, timeout, insufficient funds...): end FAILED."""
        if result_code == 0:
            raise InvalidEvidence("result code 0 means paid; use mpesa_confirmed", field="result_code")
        request = self._require_mpesa_request()
        if request.status == EvidenceStatus.FAILED and self.status is Status.FAILED:
            return
        at = _at(now)
        reason = f"M-Pesa payment not made ({result_code}): {result_desc or 'no description'}"
        failed = request.with_callback(
            result_code=result_code,
            result_desc=result_desc,
            mpesa_receipt_number=None,
            raw_callback=raw_callback,
            now=at,
        )
        self._move_to(Status.FAILED, at, reason=reason)
        self.mpesa_request = failed
        self._record(
            TransactionFailed(**self._common(at), type=self.type, reason=self.failure_reason or reason)
        )

    def stk_callback_received(
        self, callback: StkCallbackEvidence, *, now: datetime | None = None
    ) -> CallbackJudgement:
        """An STK callback about this deposit's push: judged by the STK evidence rules
        (stk_evidence.py). Evidence that proves something is recorded on the MpesaRequest (the
        version grows; MpesaCallbackReceived for a first result); anything else changes nothing
        and the judgement says why, for a person. No status change: the saga credits or fails the
        deposit once the STK Query agrees."""
        request = self._require_mpesa_request()
        judgement = judge_stk_callback(request, callback)
        at = _at(now)
        changed = apply_stk_callback(request, callback, judgement.effect, now=at)
        if changed is request:
            return judgement
        self.mpesa_request = changed
        self._touch(at)
        if judgement.effect in (CallbackEffect.SUCCESS_RECORDED, CallbackEffect.FAILURE_RECORDED):
            self._record(
                MpesaCallbackReceived(
                    **self._common(at),
                    checkout_request_id=request.checkout_request_id,
                    result_code=callback.result_code,
                    mpesa_receipt_number=changed.mpesa_receipt_number,
                )
            )
        return judgement

    def stk_query_answered(self, answer: StkQueryAnswer, *, now: datetime | None = None) -> QueryEffect:
        """A final STK Query answer about this deposit's push, judged by the STK evidence rules.
        No status change and no event: the saga that asked decides again from the evidence."""
        request = self._require_mpesa_request()
        effect = judge_stk_query(request, answer)
        if effect is QueryEffect.SETTLED:
            return effect
        at = _at(now)
        self.mpesa_request = apply_stk_query(request, answer, effect, now=at)
        self._touch(at)
        return effect

    def deriv_transfer_sent(self, *, now: datetime | None = None) -> DerivTransfer:
        """Record the Deriv transfer about to be sent (before sending it)."""
        self._require_type(TransactionType.DEPOSIT)
        at = _at(now)
        transfer = DerivTransfer.sent(
            transaction_id=self.id, client_loginid=self.deriv_login_id, amount=self._converted(), now=at
        )
        self._move_to(Status.DERIV_TRANSFER_SENT, at)
        self.deriv_transfer = transfer
        return transfer

    def deriv_transfer_completed(self, *, deriv_transaction_id: int, now: datetime | None = None) -> None:
        transfer = self._require_deriv_transfer()
        if (
            transfer.status == EvidenceStatus.CONFIRMED
            and transfer.deriv_transaction_id == deriv_transaction_id
        ):
            return
        at = _at(now)
        confirmed = transfer.confirmed(deriv_transaction_id=deriv_transaction_id, now=at)
        self._move_to(Status.COMPLETED, at)
        self.deriv_transfer = confirmed
        self._record(
            DerivTransferCompleted(
                **self._common(at), deriv_transaction_id=deriv_transaction_id, amount=transfer.amount
            )
        )
        self._record(TransactionCompleted(**self._common(at), type=self.type))

    def deriv_transfer_refused(self, reason: str, *, now: datetime | None = None) -> None:
        """Deriv refused for good after the customer paid: a person must decide (refund?)."""
        transfer = self._require_deriv_transfer()
        at = _at(now)
        self._move_to(Status.NEEDS_REVIEW, at, reason=f"Deriv refused the transfer: {reason}")
        self.deriv_transfer = transfer.failed(now=at)
        self._record(NeedsReview(**self._common(at), type=self.type, reason=self.failure_reason or reason))

    def retry_deriv_transfer(self, *, now: datetime | None = None) -> None:
        """The lost transfer is proven absent on Deriv's statement: go back and send it again."""
        transfer = self._require_deriv_transfer()
        at = _at(now)
        self._move_to(Status.MPESA_CONFIRMED, at)
        self.deriv_transfer = transfer.failed(now=at)

    # --- withdrawal flow --------------------------------------------------------------------

    def withdrawal_code_sent(self, *, now: datetime | None = None) -> None:
        """Deriv emailed the user the verification code that authorises the withdrawal."""
        self._require_type(TransactionType.WITHDRAWAL)
        self._move_to(Status.AWAITING_WITHDRAWAL_CODE, _at(now))

    def deriv_withdrawal_requested(self, *, now: datetime | None = None) -> DerivWithdrawal:
        """Record the Deriv withdrawal about to be sent (before sending it); no status change.
        Again after one that was held back unsent (deriv_withdrawal_not_sent), never after one that
        may have gone."""
        self._require_type(TransactionType.WITHDRAWAL)
        if self.status is not Status.AWAITING_WITHDRAWAL_CODE:
            raise IllegalTransition(
                f"a Deriv withdrawal is requested only while {Status.AWAITING_WITHDRAWAL_CODE}"
            )
        if self.deriv_withdrawal_may_have_gone():
            raise IllegalTransition("this withdrawal's Deriv debit was already requested")
        at = _at(now)
        self.deriv_withdrawal = DerivWithdrawal.sent(
            transaction_id=self.id, client_loginid=self.deriv_login_id, amount=self.amount, now=at
        )
        self._touch(at)
        return self.deriv_withdrawal

    def deriv_withdrawal_may_have_gone(self) -> bool:
        """A Deriv debit was requested and not proven unsent: it may have moved the user's money."""
        return self.deriv_withdrawal is not None and self.deriv_withdrawal.status != EvidenceStatus.FAILED

    def deriv_withdrawal_not_sent(self, *, now: datetime | None = None) -> None:
        """The requested debit was held back before it reached Deriv (a rate limit): nothing moved and
        the emailed code is unused, so the user may confirm again with it. No status change."""
        self._require_type(TransactionType.WITHDRAWAL)
        requested = self.deriv_withdrawal
        if (
            self.status is not Status.AWAITING_WITHDRAWAL_CODE
            or requested is None
            or requested.status != EvidenceStatus.SENT
        ):
            raise IllegalTransition("only a Deriv debit requested and unanswered can be marked not sent")
        at = _at(now)
        self.deriv_withdrawal = requested.failed(now=at)
        self._touch(at)

    def deriv_withdrawal_done(self, *, deriv_transaction_id: int, now: datetime | None = None) -> None:
        self._require_type(TransactionType.WITHDRAWAL)
        at = _at(now)
        requested = self.deriv_withdrawal or DerivWithdrawal.sent(
            transaction_id=self.id, client_loginid=self.deriv_login_id, amount=self.amount, now=at
        )
        confirmed = requested.confirmed(deriv_transaction_id=deriv_transaction_id, now=at)
        self._move_to(Status.DERIV_WITHDRAWAL_DONE, at)
        self.deriv_withdrawal = confirmed

    def mpesa_disbursement_sent(
        self,
        *,
        originator_conversation_id: str,
        conversation_id: str | None = None,
        now: datetime | None = None,
    ) -> MpesaDisbursement:
        """Record the B2C payment about to be sent, under PenPay's OriginatorConversationID."""
        self._require_type(TransactionType.WITHDRAWAL)
        at = _at(now)
        disbursement = MpesaDisbursement.sent(
            transaction_id=self.id,
            originator_conversation_id=originator_conversation_id,
            conversation_id=conversation_id,
            phone=self.phone,
            amount=self._converted(),
            now=at,
        )
        self._move_to(Status.MPESA_DISBURSEMENT_SENT, at)
        self.mpesa_disbursement = disbursement
        return disbursement

    def mpesa_disbursement_accepted(self, *, conversation_id: str, now: datetime | None = None) -> None:
        """M-Pesa accepted the B2C request (its ConversationID); the result comes later."""
        disbursement = self._require_disbursement()
        if disbursement.conversation_id == conversation_id or self.is_terminal:
            # A late acceptance of a payout whose end is known (its result failed it and the USD went
            # back) proves nothing new: the result named its ConversationID already.
            return
        at = _at(now)
        self.mpesa_disbursement = dataclasses.replace(
            disbursement, conversation_id=conversation_id, updated_at=at
        )
        self._touch(at)

    def mpesa_disbursement_completed(
        self,
        *,
        transaction_receipt: str | None,
        result_desc: str | None,
        raw_result: str | None,
        now: datetime | None = None,
    ) -> None:
        """The B2C result says paid. A repeat of the same result changes nothing."""
        self._require_type(TransactionType.WITHDRAWAL)
        disbursement = self._require_disbursement()
        if self.status is Status.COMPLETED:
            return
        at = _at(now)
        paid = disbursement.with_result(
            result_code=0,
            result_desc=result_desc,
            transaction_receipt=transaction_receipt,
            raw_result=raw_result,
            now=at,
        )
        self._move_to(Status.COMPLETED, at)
        self.mpesa_disbursement = paid
        if disbursement.status != EvidenceStatus.CONFIRMED:
            # Raised here only when this call proves the payout; a Transaction Status answer that
            # confirmed it raised it already (b2c_status_answered): once per payout.
            self._record(
                MpesaDisbursementCompleted(
                    **self._common(at),
                    originator_conversation_id=disbursement.originator_conversation_id,
                    transaction_receipt=transaction_receipt,
                    amount=disbursement.amount,
                )
            )
        self._record(TransactionCompleted(**self._common(at), type=self.type))

    def mpesa_disbursement_failed(
        self,
        *,
        result_code: int,
        result_desc: str | None,
        raw_result: str | None,
        now: datetime | None = None,
    ) -> None:
        """The B2C result says not paid. Only evidence is recorded: the caller then either
        sends the USD back to Deriv and calls reverse(), or retries (retry_mpesa_disbursement)."""
        if result_code == 0:
            raise InvalidEvidence("result code 0 means paid", field="result_code")
        disbursement = self._require_disbursement()
        if disbursement.status != EvidenceStatus.SENT or self.is_terminal:
            return  # settled already; an ended transaction takes no late evidence (as accepted)
        at = _at(now)
        self.mpesa_disbursement = disbursement.with_result(
            result_code=result_code,
            result_desc=result_desc,
            transaction_receipt=None,
            raw_result=raw_result,
            now=at,
        )
        self._touch(at)

    def b2c_result_received(
        self, result: B2CResultEvidence, *, now: datetime | None = None
    ) -> PayoutJudgement:
        """A B2C result about this transaction's payout (a withdrawal's, or a deposit's refund),
        judged by the B2C evidence rules (b2c_evidence.py). A first result is recorded on the
        MpesaDisbursement (the version grows; MpesaCallbackReceived); anything else changes nothing
        and the judgement says why, for a person. No status change: the saga decides once
        Transaction Status agrees."""
        disbursement = self._require_payout(result.originator_conversation_id)
        judgement = judge_b2c_result(disbursement, result)
        at = _at(now)
        changed = apply_b2c_result(disbursement, result, judgement.effect, now=at)
        if self._evidence_changed(disbursement, changed, at):
            self._record(
                MpesaCallbackReceived(
                    **self._common(at),
                    originator_conversation_id=disbursement.originator_conversation_id,
                    result_code=result.result_code,
                    mpesa_receipt_number=changed.transaction_receipt if result.paid else None,
                )
            )
        return judgement

    def b2c_timeout_received(
        self, timeout: B2CTimeoutEvidence, *, now: datetime | None = None
    ) -> PayoutJudgement:
        """A B2C queue timeout: the payout's outcome is unknown (SENT -> UNKNOWN), for Transaction
        Status to settle; never a failure (re-sending could pay twice)."""
        disbursement = self._require_payout(timeout.originator_conversation_id)
        judgement = judge_b2c_timeout(disbursement, timeout)
        at = _at(now)
        changed = apply_b2c_timeout(disbursement, timeout, judgement.effect, now=at)
        if self._evidence_changed(disbursement, changed, at):
            self._record(
                MpesaDisbursementOutcomeUnknown(
                    **self._common(at),
                    originator_conversation_id=disbursement.originator_conversation_id,
                    result_code=timeout.result_code,
                )
            )
        return judgement

    def b2c_status_answered(self, answer: StatusAnswer, *, now: datetime | None = None) -> PayoutJudgement:
        """A Transaction Status answer about this payout: Completed confirms it (exactly one payout:
        MpesaDisbursementCompleted), a final failure of a payout not yet paid fails it
        (MpesaDisbursementFailed), one contradicting a success puts the evidence in REVIEW."""
        disbursement = self._require_payout(answer.originator_conversation_id)
        judgement = judge_status_answer(disbursement, answer)
        at = _at(now)
        changed = apply_status_answer(disbursement, answer, judgement.effect, now=at)
        if not self._evidence_changed(disbursement, changed, at):
            return judgement
        if judgement.effect is PayoutEffect.CONFIRMED:
            self._record(
                MpesaDisbursementCompleted(
                    **self._common(at),
                    originator_conversation_id=changed.originator_conversation_id,
                    transaction_receipt=changed.transaction_receipt,
                    amount=changed.amount,
                )
            )
        elif judgement.effect is PayoutEffect.FAILURE_RECORDED:
            self._record(
                MpesaDisbursementFailed(
                    **self._common(at),
                    originator_conversation_id=changed.originator_conversation_id,
                    transaction_status=answer.transaction_status,
                )
            )
        return judgement

    def _require_payout(self, originator_conversation_id: str) -> MpesaDisbursement:
        disbursement = self._require_disbursement()
        if disbursement.originator_conversation_id != originator_conversation_id:
            raise InvalidEvidence("the answer is about another B2C payment of this transaction")
        return disbursement

    def _evidence_changed(self, before: MpesaDisbursement, after: MpesaDisbursement, at: datetime) -> bool:
        if after is before:
            return False
        self.mpesa_disbursement = after
        self._touch(at)
        return True

    def retry_mpesa_disbursement(self, *, now: datetime | None = None) -> None:
        """The B2C payment is proven not made: go back to DERIV_WITHDRAWAL_DONE to send it again."""
        self._require_type(TransactionType.WITHDRAWAL)
        self._require_disbursement()
        self._move_to(Status.DERIV_WITHDRAWAL_DONE, _at(now))

    # --- deposit refund (after review) ------------------------------------------------------

    def refund_requested(
        self, *, originator_conversation_id: str, now: datetime | None = None
    ) -> MpesaDisbursement:
        """Record the B2C refund of the customer's KES about to be sent (approved by two people,
        before sending it). Only for a deposit under review whose M-Pesa payment was received and
        whose Deriv transfer never reached the user. No status change: REVERSED once paid."""
        self._require_type(TransactionType.DEPOSIT)
        if self.status is not Status.NEEDS_REVIEW:
            raise IllegalTransition("only a deposit under review is refunded")
        request = self._require_mpesa_request()
        if request.status != EvidenceStatus.CONFIRMED:
            raise IllegalTransition("the customer's M-Pesa payment is not confirmed: nothing to refund")
        if self.deriv_transfer is not None and self.deriv_transfer.status != EvidenceStatus.FAILED:
            raise IllegalTransition("the Deriv transfer may have reached the user: not refunded")
        if self.mpesa_disbursement is not None:
            raise IllegalTransition("this deposit's refund was already requested")
        at = _at(now)
        self.mpesa_disbursement = MpesaDisbursement.sent(
            transaction_id=self.id,
            originator_conversation_id=originator_conversation_id,
            conversation_id=None,
            phone=self.phone,
            amount=self.amount,
            now=at,
        )
        self._touch(at)
        self._record(
            RefundRequested(
                **self._common(at), originator_conversation_id=originator_conversation_id, amount=self.amount
            )
        )
        return self.mpesa_disbursement

    def refund_paid(self, *, now: datetime | None = None) -> None:
        """M-Pesa paid the refund (cross-checked): the deposit ends REVERSED."""
        self._require_type(TransactionType.DEPOSIT)
        refund = self._require_disbursement()
        if refund.status != EvidenceStatus.CONFIRMED:
            raise IllegalTransition("the refund is not confirmed paid")
        receipt = refund.transaction_receipt or "no receipt"
        self.reverse(f"the customer's KES was refunded by B2C ({receipt})", now=now)

    def refund_not_paid(self, reason: str, *, now: datetime | None = None) -> None:
        """M-Pesa did not pay the refund: the evidence goes to REVIEW (a person decides again)."""
        self._require_type(TransactionType.DEPOSIT)
        refund = self._require_disbursement()
        if self.status is not Status.NEEDS_REVIEW or refund.status != EvidenceStatus.FAILED:
            raise IllegalTransition("only a failed refund of a deposit under review")
        at = _at(now)
        self.mpesa_disbursement = dataclasses.replace(refund, status=EvidenceStatus.REVIEW, updated_at=at)
        self.failure_reason = _reason(f"refund B2C not paid: {reason}")
        self._touch(at)
        self._record(NeedsReview(**self._common(at), type=self.type, reason=self.failure_reason))

    def fail_after_review(self, reason: str, *, now: datetime | None = None) -> None:
        """Two people proved that no money moved (the provider says the call never executed, or
        it was never sent): end FAILED, a debit requested and unanswered marked not executed."""
        if self.status is not Status.NEEDS_REVIEW:
            raise IllegalTransition("only a transaction under review is failed by an operator")
        at = _at(now)
        if self.deriv_withdrawal is not None and self.deriv_withdrawal.status == EvidenceStatus.SENT:
            self.deriv_withdrawal = self.deriv_withdrawal.failed(now=at)
        self.fail(reason, now=at)

    def retry_approved(self, step: str, *, now: datetime | None = None) -> None:
        """Two people approved running a stuck step again (the saga does it, with the same ids)."""
        if self.status is not Status.NEEDS_REVIEW:
            raise IllegalTransition("only a step of a transaction under review is retried in review")
        at = _at(now)
        self._touch(at)
        self._record(ReviewRetryApproved(**self._common(at), step=step))

    def lost_push_answer_found(
        self, *, checkout_request_id: str, merchant_request_id: str, now: datetime | None = None
    ) -> None:
        """The answer of a push that was lost, found in M-Pesa's own records (the payment listed
        under the push's AccountReference, and the callback naming its receipt, which gives the
        CheckoutRequestID): recorded as the push's answer, by the saga while the outcome is unknown
        or by two people under review (their retry then hands the deposit back to the saga). Either
        way STK Query is asked under that id before the deposit is credited."""
        self._require_lost_push(
            (Status.NEEDS_REVIEW, Status.OUTCOME_UNKNOWN),
            "only a deposit whose outcome is unknown has its lost push found",
        )
        at = _at(now)
        self.mpesa_request = MpesaRequest.sent(
            transaction_id=self.id,
            checkout_request_id=checkout_request_id,
            merchant_request_id=merchant_request_id,
            phone=self.phone,
            amount=self.amount,
            now=at,
        )
        self._touch(at)

    def lost_push_paid_as_listed(self, *, receipt: str, now: datetime | None = None) -> None:
        """Two people took in a lost push's payment on M-Pesa's list alone (Pull Transactions lists
        it under the push's AccountReference, and no callback ever gave its CheckoutRequestID): the
        push's request is recorded CONFIRMED under `PULL-<receipt>`, as a paybill payment's is under
        `C2B-<TransID>`. The deposit stays under review until the retry hands it to the saga, which
        credits it."""
        self._require_lost_push(
            (Status.NEEDS_REVIEW,), "only people take a lost push's payment in on M-Pesa's list"
        )
        at = _at(now)
        self.mpesa_request = MpesaRequest.paid_without_push_answer(
            transaction_id=self.id,
            checkout_request_id=f"{LISTED_REQUEST_PREFIX}{receipt}",
            merchant_request_id=LISTED_REQUEST_PREFIX.rstrip("-"),
            phone=self.phone,
            amount=self.amount,
            receipt=receipt,
            result_desc="listed by M-Pesa's Pull Transactions under the push's AccountReference",
            raw_callback=None,
            now=at,
        )
        self._touch(at)

    def _require_lost_push(self, statuses: tuple[Status, ...], refusal: str) -> None:
        """A deposit whose push has no answer recorded, in one of `statuses`."""
        self._require_type(TransactionType.DEPOSIT)
        if self.status not in statuses:
            raise IllegalTransition(refusal)
        if self.mpesa_request is not None:
            raise InvalidEvidence("this deposit's STK push already has its answer")

    def resume_after_review(self, step: str, *, now: datetime | None = None) -> None:
        """Two people approved resolving a stuck step again: back to OUTCOME_UNKNOWN, whose step
        is read from the evidence, so the saga resolves it under the ids it already holds."""
        if self.status is not Status.NEEDS_REVIEW:
            raise IllegalTransition("only a step of a transaction under review is retried in review")
        at = _at(now)
        self._move_to(Status.OUTCOME_UNKNOWN, at, reason=f"retry approved in review: {step}")
        self._record(ReviewRetryApproved(**self._common(at), step=step))

    # --- any flow ---------------------------------------------------------------------------

    def mark_outcome_unknown(self, reason: str, *, now: datetime | None = None) -> None:
        """A call that may have moved money got no answer; the step is the current status."""
        self._move_to(Status.OUTCOME_UNKNOWN, _at(now), reason=reason)

    def fail(self, reason: str, *, now: datetime | None = None) -> None:
        """End without any money having moved."""
        at = _at(now)
        self._move_to(Status.FAILED, at, reason=reason)
        self._record(TransactionFailed(**self._common(at), type=self.type, reason=_reason(reason)))

    def needs_review(self, reason: str, *, now: datetime | None = None) -> None:
        at = _at(now)
        self._move_to(Status.NEEDS_REVIEW, at, reason=reason)
        self._record(NeedsReview(**self._common(at), type=self.type, reason=_reason(reason)))

    def reverse(self, reason: str, *, now: datetime | None = None) -> None:
        """End with the money given back to where it came from (refund done)."""
        self._move_to(Status.REVERSED, _at(now), reason=reason)

    def complete_after_review(
        self, note: str, *, deriv_transaction_id: int | None = None, now: datetime | None = None
    ) -> None:
        """An operator proved the transaction went through. For a deposit, the Deriv transaction id
        the provider confirmed (when given) settles its Deriv transfer evidence."""
        if self.status is not Status.NEEDS_REVIEW:
            raise IllegalTransition("only a transaction under review is completed by an operator")
        at = _at(now)
        transfer = None
        if deriv_transaction_id is not None:
            if deriv_transaction_id <= 0:
                raise InvalidEvidence("a Deriv transaction id is positive", field="deriv_transaction_id")
            transfer = self._require_deriv_transfer()
        self._move_to(Status.COMPLETED, at)
        if transfer is not None and deriv_transaction_id is not None:
            self.deriv_transfer = transfer.confirmed(deriv_transaction_id=deriv_transaction_id, now=at)
            self._record(
                DerivTransferCompleted(
                    **self._common(at), deriv_transaction_id=deriv_transaction_id, amount=transfer.amount
                )
            )
        self._record(TransactionCompleted(**self._common(at), type=self.type))

    def copied(self) -> Transaction:
        """A copy that changes apart from this one (a call sent in the background records its answer
        on it while this one is the caller's). Every field holds an immutable value or is replaced
        when it changes, but for the pending events: a shallow copy with a list of its own is whole,
        at a fraction of a deep copy's cost."""
        twin = copy.copy(self)
        twin._pending_events = list(self._pending_events)
        return twin

    def pull_events(self) -> list[DomainEvent]:
        """The events since the last save, each marked `moved_on` when this save moved the
        transaction past it (see TransactionEvent.moved_on)."""
        events, self._pending_events = self._pending_events, []
        return _marked_moved_on(events)

    # --- internals --------------------------------------------------------------------------

    def _move_to(self, to: TransactionStatus, at: datetime, *, reason: str | None = None) -> None:
        assert_transition(self.type, self.status, to)
        step = self.outcome_unknown_step
        if step is not None and to not in OUTCOME_RESOLUTIONS[step]:
            raise IllegalTransition(f"an unknown outcome at {step.value} cannot be resolved as {to.value}")
        from_status = self.status
        self.status = to
        if reason is not None:
            self.failure_reason = _reason(reason)
        self._touch(at)
        self._record(TransactionStatusChanged(**self._common(at), from_status=from_status, to_status=to))

    def _touch(self, at: datetime) -> None:
        self.version += 1
        self.updated_at = at

    def _common(self, at: datetime) -> _EventEnvelope:
        return {"transaction_id": self.id, "version": self.version, "occurred_at": at}

    def _record(self, event: DomainEvent) -> None:
        self._pending_events.append(event)

    def _require_type(self, type_: TransactionType) -> None:
        if self.type is not type_:
            raise IllegalTransition(f"this is a {self.type.value}, not a {type_.value}")

    def _converted(self) -> Money:
        if self.converted_amount is None:
            raise InvalidAmount("this transaction has no converted amount")
        return self.converted_amount

    def _require_mpesa_request(self) -> MpesaRequest:
        self._require_type(TransactionType.DEPOSIT)
        if self.mpesa_request is None:
            raise InvalidEvidence("no STK push was recorded for this transaction")
        return self.mpesa_request

    def _require_deriv_transfer(self) -> DerivTransfer:
        self._require_type(TransactionType.DEPOSIT)
        if self.deriv_transfer is None:
            raise InvalidEvidence("no Deriv transfer was recorded for this transaction")
        return self.deriv_transfer

    def _require_disbursement(self) -> MpesaDisbursement:
        """A withdrawal's payout, or a deposit's refund."""
        if self.mpesa_disbursement is None:
            raise InvalidEvidence("no B2C payment was recorded for this transaction")
        return self.mpesa_disbursement


def _marked_moved_on(events: list[DomainEvent]) -> list[DomainEvent]:
    changes = [e for e in events if isinstance(e, TransactionStatusChanged)]
    if not changes:
        return events
    final = changes[-1]
    ended = final.to_status.is_terminal
    marked: list[DomainEvent] = []
    for event in events:
        passed = isinstance(event, TransactionStatusChanged) and event is not final
        if isinstance(event, TransactionEvent) and event is not final and (ended or passed):
            event = dataclasses.replace(event, moved_on=True)
        marked.append(event)
    return marked

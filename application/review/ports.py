"""Ports of the review queue: the proposals' storage and the providers' records it checks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from application.payments.lost_push import LostPushRecords
from application.payments.ports import StepRecord
from application.review.rules import ActionKind, ProposalStatus
from application.unit_of_work import UnitOfWork
from domain.payments.ports import TransactionRepository
from domain.shared.ids import TransactionId
from domain.user.deriv_login_id import DerivLoginId
from domain.wallet.money import Money


@dataclass(frozen=True, slots=True)
class Proposal:
    """One operator's proposed action on a transaction under review, and its decision."""

    id: uuid.UUID
    transaction_id: TransactionId
    transaction_version: int  # the transaction as the proposer saw it
    kind: ActionKind
    status: ProposalStatus
    reason: str
    proposed_by: str
    proposed_at: datetime
    deriv_transaction_id: int | None = None
    mpesa_receipt: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    outcome: str | None = None


class ReviewActions(Protocol):
    async def add(self, proposal: Proposal) -> None: ...

    async def get(self, action_id: uuid.UUID, *, for_update: bool = False) -> Proposal | None: ...

    async def open_for(self, transaction_id: TransactionId) -> Proposal | None: ...

    async def decide(self, proposal: Proposal) -> None:
        """Store the decision (status, decided_by/at, outcome); the proposal is no longer open."""
        ...


class ReviewUnitOfWork(UnitOfWork, Protocol):
    """The unit of work of review actions: the ledger, transactions and proposals, audited."""

    @property
    def transactions(self) -> TransactionRepository: ...
    @property
    def review_actions(self) -> ReviewActions: ...
    @property
    def saga_steps(self) -> ReviewSteps: ...


class ReviewSteps(Protocol):
    """The saga-step journal, as a retry approved in review re-arms it."""

    async def get(self, transaction_id: TransactionId) -> Mapping[str, StepRecord]: ...

    async def defer(
        self, transaction_id: TransactionId, step: str, *, now: datetime, until: datetime, detail: str
    ) -> None: ...

    async def reset(
        self, transaction_id: TransactionId, step: str, *, now: datetime, detail: str
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class StatementLine:
    """A line of the payment agent's Deriv statement."""

    deriv_transaction_id: int
    amount_cents: int
    currency: str
    from_loginid: str
    to_loginid: str


class DerivLookups(Protocol):
    async def withdrawal_executed(self, *, withdrawal_id: str, amount: Money) -> int | None:
        """Resolve-only (never a new debit): Deriv's transaction id of the withdrawal, or None when
        the gateway proves it never executed. Raises application.payments.errors' Call* errors
        (CallOutcomeUnknown, CallUnavailable, ...) when that cannot be known now."""
        ...

    async def transfer_executed(
        self, *, transfer_id: str, loginid: DerivLoginId, amount: Money
    ) -> StatementLine | None:
        """Resolve-only (never a new transfer), for an account on Deriv's REST API: the transfer
        Deriv holds under our request id (GET transfer/{request_id} through the gateway), or None
        when the gateway proves it never executed. Raises Call* errors when that cannot be known."""
        ...


class StkAnswer(StrEnum):
    PAID = "PAID"
    NOT_PAID = "NOT_PAID"
    OPEN = "OPEN"  # still being processed, not found yet, or the query not answered


@dataclass(frozen=True, slots=True)
class StkOutcome:
    """STK Query's answer about one of our pushes (only an answer naming our ids is one)."""

    answer: StkAnswer
    result_code: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ReceiptCheck:
    """What M-Pesa's Transaction Status said about a receipt offered for one of our payouts."""

    confirmed: bool | None  # None: no answer yet (ask again later)
    detail: str = ""


class MpesaLookups(Protocol):
    async def stk_outcome(self, *, checkout_request_id: str, merchant_request_id: str | None) -> StkOutcome:
        """STK Query (read-only: no evidence row is written)."""
        ...

    async def check_receipt(self, *, originator_conversation_id: str, receipt: str) -> ReceiptCheck:
        """Transaction Status of `receipt`, correlated to our payout `originator_conversation_id`:
        confirmed when M-Pesa's answer names that payout, its amount and ConversationID (the
        callback inbox then holds the payout as CONFIRMED with that receipt); denied when it names
        another payout, another amount, or no such transaction."""
        ...

    async def lost_push_records(self, *, since: datetime, until: datetime) -> LostPushRecords:
        """Pull Transactions of the STK shortcode over [since, until] and the paid STK callbacks
        parked since `since` (read-only). Raises application.payments.errors.CallUnavailable when
        M-Pesa's list cannot be read now."""
        ...

    async def receipt_held(self, receipt: str) -> bool:
        """Whether an M-Pesa receipt is already another payment's: an STK request's or a paybill
        payment's (read-only)."""
        ...

    async def take_in_parked(self, checkout_request_id: str) -> bool:
        """Apply the callbacks parked under this id to the push that now holds it (as the saga does
        for a callback that beat the push's answer). True when one was taken in."""
        ...


class DerivStatement(Protocol):
    async def find_line(self, reference: str, since: datetime) -> StatementLine | None:
        """The agent's statement line whose description carries `reference` (read-only). Raises
        application.payments.errors' Call* errors when Deriv cannot be asked."""
        ...

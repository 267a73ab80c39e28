"""Ports of the review queue: the proposals' storage and the providers' records it checks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from application.review.rules import ActionKind, ProposalStatus
from application.unit_of_work import UnitOfWork
from domain.payments.ports import TransactionRepository
from domain.shared.ids import TransactionId


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

    transactions: TransactionRepository
    review_actions: ReviewActions


@dataclass(frozen=True, slots=True)
class StatementLine:
    """A line of the payment agent's Deriv statement."""

    deriv_transaction_id: int
    amount_cents: int
    currency: str
    from_loginid: str
    to_loginid: str


class DerivStatement(Protocol):
    async def find_line(self, reference: str, since: datetime) -> StatementLine | None:
        """The agent's statement line whose description carries `reference` (read-only). Raises
        application.payments.errors' Call* errors when Deriv cannot be asked."""
        ...

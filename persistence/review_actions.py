"""Operators' review proposals (`review_actions`): the ReviewActions port on a unit of work's
connection."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from application.review.errors import ProposalAlreadyOpen
from application.review.ports import Proposal
from application.review.rules import ActionKind, ProposalStatus
from domain.shared.ids import TransactionId
from persistence.tables import review_actions

_r = review_actions


def proposal_of(row: Any) -> Proposal:
    return Proposal(
        id=row.id,
        transaction_id=TransactionId(row.transaction_id),
        transaction_version=int(row.transaction_version),
        kind=ActionKind(row.kind),
        status=ProposalStatus(row.status),
        reason=row.reason,
        proposed_by=row.proposed_by,
        proposed_at=row.proposed_at,
        deriv_transaction_id=row.deriv_transaction_id,
        mpesa_receipt=row.mpesa_receipt,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        outcome=row.outcome,
    )


class SqlReviewActions:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, proposal: Proposal) -> None:
        try:
            async with self._connection.begin_nested():
                await self._connection.execute(
                    _r.insert().values(
                        id=proposal.id,
                        transaction_id=proposal.transaction_id.value,
                        open_transaction_id=proposal.transaction_id.value,
                        transaction_version=proposal.transaction_version,
                        kind=proposal.kind.value,
                        status=proposal.status.value,
                        reason=proposal.reason,
                        deriv_transaction_id=proposal.deriv_transaction_id,
                        mpesa_receipt=proposal.mpesa_receipt,
                        proposed_by=proposal.proposed_by,
                        proposed_at=proposal.proposed_at,
                    )
                )
        except IntegrityError:
            raise ProposalAlreadyOpen("this transaction already has an open proposal") from None

    async def get(self, action_id: uuid.UUID, *, for_update: bool = False) -> Proposal | None:
        query = select(_r).where(_r.c.id == action_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._connection.execute(query)).first()
        return None if row is None else proposal_of(row)

    async def open_for(self, transaction_id: TransactionId) -> Proposal | None:
        row = (
            await self._connection.execute(select(_r).where(_r.c.open_transaction_id == transaction_id.value))
        ).first()
        return None if row is None else proposal_of(row)

    async def decide(self, proposal: Proposal) -> None:
        await self._connection.execute(
            update(_r)
            .where(_r.c.id == proposal.id, _r.c.status == ProposalStatus.PROPOSED.value)
            .values(
                status=proposal.status.value,
                open_transaction_id=None,
                decided_by=proposal.decided_by,
                decided_at=proposal.decided_at,
                outcome=proposal.outcome,
            )
        )

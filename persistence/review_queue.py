"""The review queue's read side: transactions that need a person, with everything stored about
them (evidence, saga steps, the providers' answers kept for review, audit records, proposals,
ledger lines).

One short connection per page; a page holds at most MAX_PAGE transactions.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from application.payments.ports import StepRecord
from application.review.ports import Proposal
from domain.payments.transaction import Transaction
from domain.shared.ids import TransactionId
from persistence.review_actions import proposal_of
from persistence.saga_steps import SqlSagaSteps
from persistence.tables import (
    audit_logs,
    audit_pending,
    ledger_accounts,
    ledger_entries,
    ledger_postings,
    mpesa_callback_reviews,
    review_actions,
    transactions,
)
from persistence.transaction_repository import SqlTransactionRepository

MAX_PAGE = 100
MAX_AUDIT_ROWS = 200
MAX_BODY = 8_000


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    kind: str
    status: str
    fields: dict[str, str]
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class ProviderAnswerRow:
    source: str
    kind: str
    reason: str
    detail: str
    correlation_id: str
    body: str
    received_at: datetime | None
    status: str


@dataclass(frozen=True, slots=True)
class AuditRow:
    id: int  # audit_logs.id; 0: committed in audit_pending, not chained yet
    occurred_at: datetime
    actor: str
    action: str
    details: str


@dataclass(frozen=True, slots=True)
class LedgerLineRow:
    posting_id: str
    description: str
    account_kind: str
    side: str
    amount_cents: int
    currency: str
    created_at: datetime
    reverses_posting_id: str


@dataclass(frozen=True, slots=True)
class QueueItem:
    transaction: Transaction
    evidence: list[EvidenceRow]
    steps: Mapping[str, StepRecord]
    answers: list[ProviderAnswerRow]
    audit: list[AuditRow]
    proposals: list[Proposal]
    ledger: list[LedgerLineRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QueuePage:
    items: list[QueueItem] = field(default_factory=list)
    next_after: uuid.UUID | None = None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _body(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return text[:MAX_BODY]


def evidence_of(tx: Transaction) -> tuple[list[EvidenceRow], list[ProviderAnswerRow], set[str]]:
    """The evidence rows, the raw answers they carry, and the Daraja ids they hold."""
    rows: list[EvidenceRow] = []
    answers: list[ProviderAnswerRow] = []
    ids: set[str] = set()
    stk = tx.mpesa_request
    if stk is not None:
        ids.update(filter(None, (stk.checkout_request_id, stk.merchant_request_id)))
        rows.append(
            EvidenceRow(
                "MPESA_REQUEST",
                str(stk.status),
                {
                    "checkout_request_id": stk.checkout_request_id,
                    "merchant_request_id": stk.merchant_request_id,
                    "amount": str(stk.amount),
                    "result_code": _text(stk.result_code),
                    "result_desc": _text(stk.result_desc),
                    "mpesa_receipt_number": _text(stk.mpesa_receipt_number),
                },
                stk.updated_at,
            )
        )
        if stk.raw_callback:
            answers.append(
                ProviderAnswerRow(
                    "stk_callback", "STK", "", "", stk.checkout_request_id, _body(stk.raw_callback),
                    stk.updated_at, str(stk.status),
                )
            )  # fmt: skip
    b2c = tx.mpesa_disbursement
    if b2c is not None:
        ids.update(filter(None, (b2c.originator_conversation_id, b2c.conversation_id)))
        rows.append(
            EvidenceRow(
                "MPESA_DISBURSEMENT",
                str(b2c.status),
                {
                    "originator_conversation_id": b2c.originator_conversation_id,
                    "conversation_id": _text(b2c.conversation_id),
                    "amount": str(b2c.amount),
                    "result_code": _text(b2c.result_code),
                    "result_desc": _text(b2c.result_desc),
                    "transaction_receipt": _text(b2c.transaction_receipt),
                },
                b2c.updated_at,
            )
        )
        if b2c.raw_result:
            answers.append(
                ProviderAnswerRow(
                    "b2c_result", "B2C", "", "", b2c.originator_conversation_id, _body(b2c.raw_result),
                    b2c.updated_at, str(b2c.status),
                )
            )  # fmt: skip
    for kind, record in (("DERIV_TRANSFER", tx.deriv_transfer), ("DERIV_WITHDRAWAL", tx.deriv_withdrawal)):
        if record is None:
            continue
        rows.append(
            EvidenceRow(
                kind,
                str(record.status),
                {
                    "client_loginid": record.client_loginid.value,
                    "amount": str(record.amount),
                    "deriv_transaction_id": _text(record.deriv_transaction_id),
                },
                record.updated_at,
            )
        )
    return rows, answers, ids


async def _answers(
    connection: AsyncConnection, tx_id: TransactionId, ids: set[str]
) -> list[ProviderAnswerRow]:
    r = mpesa_callback_reviews
    match = [r.c.transaction_id == tx_id.value]
    if ids:
        match.append(r.c.correlation_id.in_(sorted(ids)))
    rows = await connection.execute(select(r).where(or_(*match)).order_by(r.c.received_at))
    return [
        ProviderAnswerRow(
            "mpesa_callback_review", row.kind, row.reason, _text(row.detail), _text(row.correlation_id),
            _body(row.raw_body), row.received_at, row.status,
        )
        for row in rows
    ]  # fmt: skip


async def _audit(connection: AsyncConnection, tx_id: TransactionId) -> list[AuditRow]:
    """The chain's rows about the transaction, then those committed but not chained yet (id 0): the
    background sealer chains them a moment after their action, and the operator sees them now."""
    found: list[AuditRow] = []
    for table, chained in ((audit_logs, True), (audit_pending, False)):
        rows = await connection.execute(
            select(table)
            .where(table.c.subject_id == str(tx_id))
            .order_by(table.c.id)
            .limit(MAX_AUDIT_ROWS - len(found))
        )
        found.extend(
            AuditRow(int(row.id) if chained else 0, row.occurred_at, row.actor, row.action, row.details)
            for row in rows
        )
        if len(found) >= MAX_AUDIT_ROWS:
            break
    return found


async def _ledger(connection: AsyncConnection, tx_id: TransactionId) -> list[LedgerLineRow]:
    p, e, a = ledger_postings, ledger_entries, ledger_accounts
    rows = await connection.execute(
        select(p.c.id, p.c.description, p.c.reverses_posting_id, p.c.created_at, a.c.kind, e.c.side)
        .add_columns(e.c.amount_cents, e.c.amount_currency)
        .select_from(p.join(e, e.c.posting_id == p.c.id).join(a, a.c.id == e.c.account_id))
        .where(p.c.transaction_id == tx_id.value)
        .order_by(p.c.created_at, p.c.id, e.c.id)
    )
    return [
        LedgerLineRow(
            str(row.id), row.description, row.kind, row.side, int(row.amount_cents), row.amount_currency,
            row.created_at, _text(row.reverses_posting_id),
        )
        for row in rows
    ]  # fmt: skip


async def _proposals(connection: AsyncConnection, tx_id: TransactionId) -> list[Proposal]:
    r = review_actions
    rows = await connection.execute(
        select(r).where(r.c.transaction_id == tx_id.value).order_by(r.c.proposed_at, r.c.id)
    )
    return [proposal_of(row) for row in rows]


async def review_queue(
    engine: AsyncEngine,
    *,
    statuses: Sequence[str],
    type_: str | None,
    transaction_id: TransactionId | None,
    page_size: int,
    after: uuid.UUID | None,
) -> QueuePage:
    t = transactions
    query = select(t.c.id).order_by(t.c.id).limit(min(page_size, MAX_PAGE) + 1)
    if transaction_id is not None:
        query = query.where(t.c.id == transaction_id.value)
    else:
        query = query.where(t.c.status.in_(list(statuses)))
        if type_:
            query = query.where(t.c.type == type_)
    if after is not None:
        query = query.where(t.c.id > after)
    async with engine.connect() as connection:
        ids = [row.id for row in await connection.execute(query)]
        more = len(ids) > page_size
        ids = ids[:page_size]
        repository = SqlTransactionRepository(connection, lambda source: None)
        steps = SqlSagaSteps(connection, repository)
        items: list[QueueItem] = []
        for raw_id in ids:
            tx_id = TransactionId(raw_id)
            tx = await repository.get(tx_id)
            if tx is None:
                continue
            evidence, answers, daraja_ids = evidence_of(tx)
            answers.extend(await _answers(connection, tx_id, daraja_ids))
            items.append(
                QueueItem(
                    transaction=tx,
                    evidence=evidence,
                    steps=await steps.get(tx_id),
                    answers=answers,
                    audit=await _audit(connection, tx_id),
                    proposals=await _proposals(connection, tx_id),
                    ledger=await _ledger(connection, tx_id),
                )
            )
    return QueuePage(items=items, next_after=ids[-1] if more and ids else None)

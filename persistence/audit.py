"""Audit log writer: append-only `audit_logs` rows, in the same transaction as the action.

Each row carries a SHA-256 over its own content (row_hash). Chaining rows to each other
(prev_hash) is done by the audit chain work of the identity/security issue.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.shared.events import DomainEvent
from domain.shared.json_value import JSONValue
from persistence.outbox import bounded_context
from persistence.tables import audit_logs

_INSERT_AUDIT = insert(audit_logs)

# Events of these bounded contexts are financial actions and are audited automatically.
FINANCIAL_CONTEXTS = frozenset({"payments", "wallet"})


@dataclass(frozen=True, slots=True)
class AuditRecord:
    occurred_at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str
    details: Mapping[str, JSONValue]

    def row(self) -> dict[str, Any]:
        details = json.dumps(self.details, separators=(",", ":"), sort_keys=True)
        content = "|".join(
            (
                self.occurred_at.isoformat(),
                self.actor,
                self.action,
                self.subject_type,
                self.subject_id,
                details,
            )
        )
        return {
            "occurred_at": self.occurred_at,
            "actor": self.actor,
            "action": self.action,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "details": details,
            "prev_hash": None,
            "row_hash": hashlib.sha256(content.encode()).hexdigest(),
        }


def is_financial(event: DomainEvent) -> bool:
    return bounded_context(event) in FINANCIAL_CONTEXTS


def record_for_event(event: DomainEvent, actor: str) -> AuditRecord:
    return AuditRecord(
        occurred_at=event.occurred_at,
        actor=actor,
        action=event.event_type,
        subject_type=event.aggregate_type,
        subject_id=event.aggregate_id(),
        details={"event_id": str(event.event_id), **event.payload()},
    )


async def write_records(connection: AsyncConnection, records: Sequence[AuditRecord]) -> None:
    if records:
        await connection.execute(_INSERT_AUDIT, [r.row() for r in records])

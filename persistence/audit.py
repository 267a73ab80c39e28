"""Audit log: append-only `audit_logs` rows linked into one SHA-256 hash chain (tamper evidence).

Each row carries prev_hash (the row_hash of the row before it in the chain) and
row_hash = SHA-256(prev_hash + "\\n" + content), content being occurred_at, actor, action,
subject and details. Chain order is id order. The chain head (last hash, row count) lives in
the one-row `audit_chain_head` table.

Writing is in two steps, so that no business transaction waits for the chain head:
1. write_pending(): inside the action's own transaction, the records go to `audit_pending`
   (committed with the action or not at all; no lock beyond the rows inserted);
2. seal_pending(): later, in the background sealer or right after the commit
   (persistence/audit_sealer.py), a short transaction locks the head (SELECT ... FOR UPDATE; on
   SQLite the transaction holds the write lock), moves every committed pending record into
   audit_logs in id order, chained, each with the pending_id it came from (one INSERT, whose
   RETURNING gives the head its last id), deletes them from audit_pending and moves the head.
   Sealers serialise on the head, once per batch of records instead of once per business commit;
   chain order is the order records were sealed in.
verify_chain() walks the rows and finds any changed, removed or inserted row, and a cut tail
(against the head); records still waiting in audit_pending are counted, not checked.

Database triggers (migration 0004) refuse UPDATE and DELETE on audit_logs and ledger_entries;
those of migration 0008 refuse any UPDATE of audit_pending, and a DELETE of a pending record no
audit_logs row holds verbatim under its pending_id, so a record cannot be changed or dropped
before it is sealed.
pending_id is not part of row_hash (rows sealed before it existed keep verifying).
The chain proves integrity relative to the head: publishing the head hash elsewhere from time
to time (e.g. in a daily report) also covers someone able to rewrite the head itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.shared.clock import utc_now
from domain.shared.events import DomainEvent
from domain.shared.json_value import JSONValue
from persistence.delete_by_ids import delete_by_ids
from persistence.outbox import bounded_context
from persistence.tables import audit_chain_head, audit_logs, audit_pending

GENESIS_HASH = "0" * 64
HEAD_ID = 1

# RETURNING (MariaDB >= 10.5, SQLite >= 3.35): the ids the rows were given, so the head learns its
# last id from the insert itself, not from a MAX(id) over audit_logs.
_INSERT_AUDIT = insert(audit_logs).returning(audit_logs.c.id)
_INSERT_PENDING = insert(audit_pending)
# A plain read, after the head lock: no lock on audit_pending, whose gap after the last row a
# locking read held at REPEATABLE READ, so every unit of work's INSERT of its records (and its
# commit, and the ledger rows it held) waited for the seal. See seal_pending.
_PENDING_BATCH = select(audit_pending).order_by(audit_pending.c.id).limit(bindparam("batch_size"))
_COUNT_PENDING = select(func.count()).select_from(audit_pending)
_OLDEST_PENDING = select(func.min(audit_pending.c.occurred_at))
_LOCK_HEAD = select(audit_chain_head).where(audit_chain_head.c.id == HEAD_ID).with_for_update()
_INSERT_HEAD = insert(audit_chain_head)
_UPDATE_HEAD = (
    update(audit_chain_head)
    .where(audit_chain_head.c.id == HEAD_ID)
    .values(
        last_audit_id=bindparam("last_audit_id"),
        last_hash=bindparam("last_hash"),
        row_count=bindparam("row_count"),
        updated_at=bindparam("updated_at"),
    )
)
_READ_HEAD = select(audit_chain_head).where(audit_chain_head.c.id == HEAD_ID)
_PAGE = (
    select(audit_logs)
    .where(audit_logs.c.id > bindparam("after"))
    .order_by(audit_logs.c.id)
    .limit(bindparam("page_size"))
)

# Events of these bounded contexts are financial actions and are audited automatically: migration
# 0028's trigger copies their outbox rows into audit_pending (it names them as streams).
FINANCIAL_CONTEXTS = frozenset({"payments", "wallet"})


def content_of(
    occurred_at: datetime, actor: str, action: str, subject_type: str, subject_id: str, details: str
) -> str:
    return "|".join(
        (occurred_at.astimezone(UTC).isoformat(), actor, action, subject_type, subject_id, details)
    )


def chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


def row_content(row: Any) -> str:
    return content_of(row.occurred_at, row.actor, row.action, row.subject_type, row.subject_id, row.details)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    occurred_at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str
    details: Mapping[str, JSONValue]

    def pending_row(self) -> dict[str, Any]:
        """The record's content as audit_pending (and audit_logs) store it."""
        return {
            "occurred_at": self.occurred_at,
            "actor": self.actor,
            "action": self.action,
            "subject_type": self.subject_type,
            "subject_id": self.subject_id,
            "details": json.dumps(self.details, separators=(",", ":"), sort_keys=True),
        }

    def row(self, prev_hash: str = GENESIS_HASH) -> dict[str, Any]:
        return chained(self.pending_row(), prev_hash)


def chained(content: Mapping[Any, Any], prev_hash: str) -> dict[str, Any]:
    """An audit_logs row: the record's content (as pending_row() gives it), linked to `prev_hash`."""
    row: dict[str, Any] = {key: content[key] for key in CONTENT_COLUMNS}
    text = content_of(*(row[key] for key in CONTENT_COLUMNS))
    return {**row, "prev_hash": prev_hash, "row_hash": chain_hash(prev_hash, text)}


CONTENT_COLUMNS = ("occurred_at", "actor", "action", "subject_type", "subject_id", "details")


def is_financial(event: DomainEvent) -> bool:
    return bounded_context(event) in FINANCIAL_CONTEXTS


async def _lock_head(connection: AsyncConnection) -> tuple[str, int]:
    head = (await connection.execute(_LOCK_HEAD)).first()
    if head is None:
        # Only a database not made by the migrations lacks the head row (0004 creates it).
        await connection.execute(
            _INSERT_HEAD,
            {
                "id": HEAD_ID,
                "last_audit_id": None,
                "last_hash": GENESIS_HASH,
                "row_count": 0,
                "updated_at": utc_now(),
            },
        )
        head = (await connection.execute(_LOCK_HEAD)).one()
    return str(head.last_hash), int(head.row_count)


async def write_pending(connection: AsyncConnection, records: Sequence[AuditRecord]) -> None:
    """Step 1, in the action's transaction: the records wait in audit_pending (no lock taken)."""
    if records:
        await connection.execute(_INSERT_PENDING, [record.pending_row() for record in records])


async def seal_pending(connection: AsyncConnection, *, batch_size: int = 1000) -> int:
    """Step 2, in a transaction of its own (the caller commits): chain up to `batch_size` committed
    pending records into audit_logs under the head lock. Returns how many were sealed."""
    prev, count = await _lock_head(connection)
    # The snapshot is taken here, after the head lock (a locking read takes none): it holds every
    # record committed so far and none a seal before ours deleted, as only seals delete and they go
    # one at a time under the head lock. A record committed after it is the next seal's. The unique
    # audit_logs.pending_id refuses a record chained twice, should a caller's snapshot be older.
    pending = (await connection.execute(_PENDING_BATCH, {"batch_size": batch_size})).all()
    if not pending:
        return 0
    rows = []
    for record in pending:
        row = chained(record._mapping, prev)
        # pending_id (outside the hash) is what lets the delete below past audit_pending's guard.
        rows.append({**row, "pending_id": record.id})
        prev = row["row_hash"]
    last_id = max((await connection.execute(_INSERT_AUDIT, rows)).scalars())
    await delete_by_ids(connection, audit_pending, [record.id for record in pending])
    await connection.execute(
        _UPDATE_HEAD,
        {
            "last_audit_id": last_id,
            "last_hash": prev,
            "row_count": count + len(rows),
            "updated_at": utc_now(),
        },
    )
    return len(rows)


async def count_pending(connection: AsyncConnection) -> int:
    return int((await connection.execute(_COUNT_PENDING)).scalar_one())


async def oldest_pending(connection: AsyncConnection) -> datetime | None:
    """When the oldest record still waiting to be sealed was written (None: none waits)."""
    value: datetime | None = (await connection.execute(_OLDEST_PENDING)).scalar()
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass
class ChainReport:
    rows_checked: int = 0
    problems: list[str] = field(default_factory=list)
    pending: int = 0  # records committed but not sealed yet (not part of the chain so far)
    # The last row walked (the next incremental walk starts after it); None: no row at all.
    last_id: int | None = None
    last_hash: str = GENESIS_HASH

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class ChainPoint:
    """A verified row of the chain: its id, its row_hash and how many rows the chain held up to it."""

    row_id: int
    row_hash: str
    rows: int


_ROW_BY_ID = select(audit_logs).where(audit_logs.c.id == bindparam("row_id"))


async def verify_chain(
    connection: AsyncConnection,
    *,
    page_size: int = 1000,
    max_problems: int = 100,
    start: ChainPoint | None = None,
) -> ChainReport:
    """Walk audit_logs in id order; report every row whose hash or link does not hold.
    From `start` (a point an earlier walk verified): the row there must still be what it was, and
    only the rows after it are walked (the head's count is checked against start.rows + those)."""
    report = ChainReport()
    prev_hash, prev_id, after, rows_before = GENESIS_HASH, None, -1, 0
    if start is not None:
        anchor = (await connection.execute(_ROW_BY_ID, {"row_id": start.row_id})).first()
        if anchor is None or anchor.row_hash != start.row_hash:
            report.problems.append(
                f"row {start.row_id}: no longer the row verified before (removed or changed)"
            )
        elif anchor.row_hash != chain_hash(anchor.prev_hash or "", row_content(anchor)):
            report.problems.append(f"row {start.row_id}: content does not match its hash (changed)")
        prev_hash, prev_id, after, rows_before = start.row_hash, start.row_id, start.row_id, start.rows
    report.last_id, report.last_hash = prev_id, prev_hash
    while len(report.problems) < max_problems:
        rows = (await connection.execute(_PAGE, {"after": after, "page_size": page_size})).all()
        if not rows:
            break
        for row in rows:
            report.rows_checked += 1
            if row.prev_hash != prev_hash:
                where = f"after row {prev_id}" if prev_id is not None else "at the start"
                report.problems.append(
                    f"row {row.id}: chain broken {where} (a row was removed or inserted here)"
                )
            if row.row_hash != chain_hash(row.prev_hash or "", row_content(row)):
                report.problems.append(f"row {row.id}: content does not match its hash (changed)")
            prev_hash, prev_id = row.row_hash, row.id
        after = rows[-1].id
    report.last_id, report.last_hash = prev_id, prev_hash
    report.pending = await count_pending(connection)
    head = (await connection.execute(_READ_HEAD)).first()
    if head is None:
        if report.rows_checked or rows_before:
            report.problems.append("the chain head is missing")
    else:
        if head.last_hash != prev_hash:
            report.problems.append(
                f"the last row ({prev_id}) is not the chain head (rows removed from or added at the end)"
            )
        if int(head.row_count) != rows_before + report.rows_checked:
            report.problems.append(
                f"the head counts {head.row_count} rows, the table has {rows_before + report.rows_checked}"
            )
    return report

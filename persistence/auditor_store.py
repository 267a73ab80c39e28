"""The auditor's own rows: its verdicts (audit_verdicts, what an ops console shows) and where each
incremental check got to (audit_checkpoints)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.tables import audit_checkpoints, audit_verdicts

_v, _c = audit_verdicts, audit_checkpoints
# The checks of the continuous auditor (workers/auditor.py), in the order it runs them.
AUDIT_CHECKS = (
    "ledger_sums",
    "no_overdraft",
    "account_balances",
    "audit_chain",
    "float_deriv",
    "float_mpesa",
    "stale_transactions",
    "funding_in_capital",
    "float_leases",
)
_SUMMARY_MAX = 1000


@dataclass(frozen=True, slots=True)
class Verdict:
    check: str
    status: str  # OK, FAIL, SKIPPED
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    checked_at: datetime | None = None

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


async def save_verdicts(
    connection: AsyncConnection, run_id: str, verdicts: Sequence[Verdict], *, now: datetime
) -> None:
    await connection.execute(
        insert(_v),
        [
            {
                "run_id": run_id,
                "check_name": v.check,
                "status": v.status,
                "summary": v.summary[:_SUMMARY_MAX],
                "details": json.dumps(v.details, sort_keys=True, default=str),
                "checked_at": now,
            }
            for v in verdicts
        ],
    )


async def prune_verdicts(connection: AsyncConnection, *, before: datetime) -> int:
    result = await connection.execute(delete(_v).where(_v.c.checked_at < before))
    return int(result.rowcount or 0)


def _verdict(row: Any) -> Verdict:
    return Verdict(
        check=row.check_name,
        status=row.status,
        summary=row.summary,
        details=json.loads(row.details),
        run_id=row.run_id,
        checked_at=row.checked_at,
    )


async def last_verdicts(connection: AsyncConnection) -> dict[str, Verdict]:
    """Each check's most recent verdict."""
    newest = select(_v.c.check_name, func.max(_v.c.id).label("id")).group_by(_v.c.check_name).subquery()
    rows = await connection.execute(select(_v).join(newest, newest.c.id == _v.c.id).order_by(_v.c.check_name))
    return {row.check_name: _verdict(row) for row in rows}


async def recent_verdicts(
    connection: AsyncConnection, *, runs: int = 1, check: str | None = None
) -> list[Verdict]:
    """The verdicts of the last `runs` runs (newest first), of one check or all."""
    ids = select(_v.c.run_id, func.max(_v.c.id).label("last")).group_by(_v.c.run_id)
    if check:
        ids = ids.where(_v.c.check_name == check)
    last_runs = (await connection.execute(ids.order_by(func.max(_v.c.id).desc()).limit(runs))).scalars().all()
    if not last_runs:
        return []
    query = select(_v).where(_v.c.run_id.in_(list(last_runs)))
    if check:
        query = query.where(_v.c.check_name == check)
    rows = await connection.execute(query.order_by(_v.c.id.desc()))
    return [_verdict(row) for row in rows]


async def read_checkpoint(connection: AsyncConnection, name: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(_c.c.position).where(_c.c.name == name))).first()
    return None if row is None else dict(json.loads(row.position))


async def write_checkpoint(
    connection: AsyncConnection, name: str, position: dict[str, Any], *, now: datetime
) -> None:
    text = json.dumps(position, sort_keys=True, default=str)
    # Not "update, insert if no row changed": MariaDB counts an update that changes nothing as 0 rows.
    exists = (await connection.execute(select(_c.c.name).where(_c.c.name == name))).first()
    if exists is None:
        await connection.execute(insert(_c).values(name=name, position=text, updated_at=now))
    else:
        await connection.execute(update(_c).where(_c.c.name == name).values(position=text, updated_at=now))

"""A fingerprint of everything the database holds, to prove that a refused request changed nothing.

The fuzz run takes one after every answer (only requests change the database: no saga worker or
relay runs beside the API; the one thing a request leaves running, its background audit seal, is
waited for) and compares the fingerprints around each 4xx. MariaDB's CHECKSUM TABLE
covers every row and column of every table in one statement (~2 ms here, against ~70 ms for
reading the tables), so every case can afford it. Audit rows are append-only with increasing ids:
the ones a refusal added are read back to check they record that refusal.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.audit_sealer import sealer_for
from persistence.tables import audit_logs, metadata

_CHECKSUM = text("CHECKSUM TABLE " + ", ".join(f"`{t.name}`" for t in metadata.sorted_tables) + " EXTENDED")


@dataclass(frozen=True)
class Fingerprint:
    checksums: dict[str, int]
    last_audit_id: int

    def changed_tables(self, later: Fingerprint) -> list[str]:
        return sorted(t for t in self.checksums if later.checksums.get(t) != self.checksums[t])


async def fingerprint(engine: AsyncEngine) -> Fingerprint:
    """MariaDB / MySQL only (CHECKSUM TABLE). Taken once the background audit seal of the requests
    answered so far has run: the API answers a deposit before its records are chained, and the seal
    moving them from audit_pending to audit_logs must count for that deposit, not the next request."""
    await sealer_for(engine).settled()
    async with engine.connect() as connection:
        rows = (await connection.execute(_CHECKSUM)).all()
        last = (await connection.execute(select(func.max(audit_logs.c.id)))).scalar()
    return Fingerprint(
        {str(name).rsplit(".", 1)[-1]: int(value or 0) for name, value in rows}, int(last or 0)
    )


async def audit_actions_since(engine: AsyncEngine, after_id: int) -> list[str]:
    async with engine.connect() as connection:
        query = select(audit_logs.c.action).where(audit_logs.c.id > after_id).order_by(audit_logs.c.id)
        return list((await connection.execute(query)).scalars())

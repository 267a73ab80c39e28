"""The roll-up of hot accounts: their pending changes added into their balances.

One short transaction: read the pending rows (a plain read), lock the accounts they belong to,
skipping any a posting holds right now (it will be rolled up next time; the roll-up never waits
on a money movement, nor makes one wait), delete exactly the rows read for those accounts and add
their sums to balance_cents. A reader sees either the rows or the balance that includes them,
never both: an account's balance is balance_cents + SUM(its pending rows) at every commit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

from sqlalchemy import bindparam, case, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.delete_by_ids import delete_by_ids
from persistence.tables import ledger_accounts, ledger_balance_deltas

_a, _d = ledger_accounts, ledger_balance_deltas

_PENDING = select(_d.c.id, _d.c.account_id, _d.c.delta_cents).order_by(_d.c.id).limit(bindparam("limit"))
_LOCK_ACCOUNTS = (
    select(_a.c.id)
    .where(_a.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_a.c.id)
    .with_for_update(skip_locked=True)
)


async def roll_up(engine: AsyncEngine, now: datetime, *, limit: int = 10_000) -> int:
    """Roll up to `limit` pending changes into their accounts; returns how many rows it rolled."""
    async with engine.begin() as connection:
        rows = (await connection.execute(_PENDING, {"limit": limit})).all()
        if not rows:
            return 0
        by_account: dict[uuid.UUID, list[tuple[int, int]]] = defaultdict(list)
        for row in rows:
            by_account[row.account_id].append((int(row.id), int(row.delta_cents)))
        result = await connection.execute(_LOCK_ACCOUNTS, {"ids": sorted(by_account, key=lambda i: i.bytes)})
        locked: list[uuid.UUID] = list(result.scalars())
        if not locked:
            return 0
        ids = [row_id for account in locked for row_id, _ in by_account[account]]
        deleted = await delete_by_ids(connection, _d, ids)
        if deleted != len(ids):
            # Another transaction rolled some of them in (a float found short takes its own):
            # the rows read are not all there; leave it all to the next pass.
            await connection.rollback()
            return 0
        sums = {account: sum(delta for _, delta in by_account[account]) for account in locked}
        added = case(*[(_a.c.id == account, total) for account, total in sums.items()], else_=0)
        await connection.execute(
            update(_a)
            .where(_a.c.id.in_(list(sums)))
            .values(
                balance_cents=_a.c.balance_cents + added,
                version=_a.c.version + 1,
                updated_at=now,
            )
        )
        return len(ids)

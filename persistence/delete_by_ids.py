"""Delete rows of a queue table by their ids, one primary-key lookup per id, whatever the optimizer
thinks of the list.

`DELETE FROM t WHERE id IN (...)` on a small table that the list covers most of (audit_pending
under the sealer, ledger_balance_deltas under the roll-up: every committed row is taken) is run by
MariaDB as a scan of the whole table. Under REPEATABLE READ (READ COMMITTED too) the scan locks
every row it passes with its gap, the supremum included: it waits for every transaction that has
inserted a row there and not yet committed (every money movement writes audit records and deltas),
and every insert into the table waits for it until it commits. Measured in the e2e bench
(`--lock-waits`) these two deletes were the first waits of the convoys behind most row-lock waits
of a deposit.

Here the ids come as one JSON array, unpacked by JSON_TABLE (MariaDB 10.6; MySQL 8.0 has it too,
untested here) and joined to the table in that order (STRAIGHT_JOIN): one unique lookup per id,
which locks that row only (not its gap) and never meets a row another transaction is still
inserting. SQLite has no row locks: it keeps the IN list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, delete, text
from sqlalchemy.ext.asyncio import AsyncConnection


@cache
def _by_lookup(table: Table) -> Any:
    key = table.primary_key.columns.values()
    assert len(key) == 1 and key[0].name == "id", "a table keyed by one integer column `id`"
    return text(
        "DELETE t FROM JSON_TABLE(:ids, '$[*]' COLUMNS (id BIGINT PATH '$')) AS k "
        f"STRAIGHT_JOIN {table.name} AS t ON t.id = k.id"
    )


@cache
def _by_list(table: Table) -> Any:
    return delete(table).where(table.c.id.in_(bindparam("ids", expanding=True)))


async def delete_by_ids(connection: AsyncConnection, table: Table, ids: Sequence[int]) -> int:
    """Delete `table`'s rows with these ids; returns how many were there to delete."""
    if not ids:
        return 0
    if connection.dialect.name == "sqlite":
        return int((await connection.execute(_by_list(table), {"ids": list(ids)})).rowcount)
    result = await connection.execute(_by_lookup(table), {"ids": json.dumps([int(i) for i in ids])})
    return int(result.rowcount)

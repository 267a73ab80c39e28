"""The journal's group commit on MariaDB/MySQL: raw SQL on a driver connection of the lane's own."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from deriv_gateway.journal.group_commit import (
    COLUMNS,
    FENCE_GET_SQL,
    FENCE_SQL,
    FINISH_SQL,
    INSERT_SQL,
    TABLE,
    GroupCommit,
    Missed,
    duplicate,
    past_the_fence,
)
from deriv_gateway.journal.records import FENCE_ID, SENDING, FenceMissing


class MySQLGroupCommit(GroupCommit):
    """The same batches on MariaDB/MySQL, on a raw connection (aiomysql or asyncmy) of the lane's own.

    The journal's hottest path (two batches per operation): SQL written once per batch shape and
    sent as is, with no SQLAlchemy statement building, compilation or greenlet hop per statement.
    The lane runs READ COMMITTED: its statements are point writes and locking reads, which see the
    latest committed rows in either level, and without gap locks the outcomes lane's locking read
    cannot deadlock with the claims lane's inserts (it did under REPEATABLE READ when MariaDB chose
    a scan). The connection is outside the engine's pool, so that session setting never leaks to
    other users of the pool. (READ COMMITTED writes need binlog_format ROW or MIXED, the
    defaults of MySQL 8 and MariaDB; with STATEMENT the journal refuses to write, it never misbehaves.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._raw: Any = None

    async def _raw_connection(self) -> Any:
        if self._raw is None:
            # the engine's own driver and connect arguments (FOUND_ROWS among them: rowcount counts
            # matched rows, which the fence and the outcomes compare)
            _, params = self.engine.dialect.create_connect_args(self.engine.url)
            if self.engine.url.get_driver_name() == "asyncmy":
                import asyncmy

                raw = await asyncmy.connect(**params, autocommit=False)
            else:
                import aiomysql

                raw = await aiomysql.connect(**params, autocommit=False)
            async with raw.cursor() as cur:
                await cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            self._raw = raw
        return self._raw

    async def _drop_connection(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()

    async def _commit(self, batch: list[tuple[str, dict[str, Any], asyncio.Future[Any]]]) -> list[Any]:
        inserts = [(i, p) for i, (kind, p, _) in enumerate(batch) if kind == "insert"]
        finishes = [(i, p) for i, (kind, p, _) in enumerate(batch) if kind == "finish"]
        if inserts:
            await self._ensure_fence()
        try:
            # the usual batch: new ids only, outcomes of rows this leader still owns
            return await self._commit_once(len(batch), inserts, finishes, optimistic=True)
        except Missed:
            # rolled back: the same batch again, checking every row first
            return await self._commit_once(len(batch), inserts, finishes, optimistic=False)

    async def _commit_once(
        self,
        size: int,
        inserts: list[tuple[int, dict[str, Any]]],
        finishes: list[tuple[int, dict[str, Any]]],
        *,
        optimistic: bool,
    ) -> list[Any]:
        raw = await self._raw_connection()
        results: list[Any] = [None] * size
        try:
            async with raw.cursor() as cur:
                if inserts:
                    for i, outcome in await claim_rows(cur, inserts, optimistic):
                        results[i] = outcome
                if finishes:
                    counts = await finish_rows(cur, [p for _, p in finishes], optimistic)
                    for (i, _), count in zip(finishes, counts, strict=True):
                        results[i] = count
            await raw.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                await raw.rollback()
            raise
        return results


# per-row values of a multi-row outcome update: (column, params key)
_OUTCOME = [
    ("status", "new_status"),
    ("deriv_transaction_id", "txn"),
    ("error_code", "err_code"),
    ("error_message", "err_message"),
    ("result", "res"),
    ("updated_at", "now"),
]


def _naive(value: Any) -> Any:
    """Aware datetimes as naive UTC, as persistence.types.UtcDateTime stores them."""
    return value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value


def _marks(n: int) -> str:
    return ", ".join(["%s"] * n)


async def claim_rows(
    cur: Any, inserts: list[tuple[int, dict[str, Any]]], optimistic: bool
) -> list[tuple[int, Any]]:
    """The claims of a batch: pass the fence once (newest token), then insert the new ids.

    Optimistic: one multi-row INSERT, which a duplicate id fails as a whole (Missed). Checked: the
    ids that exist are looked up first and reported as not created.
    """
    newest = max(p["fencing_token"] for _, p in inserts)
    # the fence's updated_at: the batch's newest claim time (the journal's clock, no reading of its own)
    now = _naive(max(p["created_at"] for _, p in inserts))
    await cur.execute(FENCE_SQL, (newest, now, FENCE_ID, newest))
    if cur.rowcount == 1:
        current = newest
    else:
        await cur.execute(FENCE_GET_SQL, (FENCE_ID,))
        row = await cur.fetchone()
        if row is None:
            raise FenceMissing("the journal's fence row is missing")
        current = int(row[0])
    kept, out = past_the_fence(inserts, newest, current)
    if not kept:
        return out
    existing: set[str] = set()
    if not optimistic:
        ids = list({p["operation_id"] for _, p in kept})
        query = f"SELECT operation_id FROM {TABLE} WHERE operation_id IN ({_marks(len(ids))})"  # noqa: S608
        await cur.execute(query, ids)
        existing = {r[0] for r in await cur.fetchall()}
    fresh = []
    for i, p in kept:
        if p["operation_id"] in existing:
            if optimistic:
                raise Missed
            out.append((i, False))
        else:
            existing.add(p["operation_id"])
            fresh.append(tuple(_naive(p[c]) for c in COLUMNS))
            out.append((i, True))
    if fresh:
        try:
            await cur.executemany(INSERT_SQL, fresh)  # one multi-row INSERT
        except Exception as exc:
            if optimistic and duplicate(exc):
                raise Missed from exc
            raise
    return out


async def finish_rows(cur: Any, items: list[dict[str, Any]], optimistic: bool) -> list[int]:
    """The outcomes of a batch, with one UPDATE for all of them; per item 1 if recorded, 0 if its row
    is not SENDING under its token (or an earlier item of the batch recorded the same row).

    Optimistic (distinct rows, one token): the UPDATE checks status and token itself and must match
    every row, else Missed. Checked: a locking read decides which items may write first.
    """
    if len(items) == 1:
        p = items[0]
        values = [_naive(p[key]) for _, key in _OUTCOME]
        await cur.execute(FINISH_SQL, (*values, p["op_id"], SENDING, p["token"]))
        return [int(cur.rowcount)]
    tokens = {p["token"] for p in items}
    ids = list({p["op_id"] for p in items})
    if optimistic and len(tokens) == 1 and len(ids) == len(items):
        await _write_outcomes(cur, items, tokens.pop())
        if cur.rowcount != len(items):
            raise Missed
        return [1] * len(items)
    query = (
        f"SELECT operation_id, status, fencing_token FROM {TABLE} WHERE operation_id IN ({_marks(len(ids))})"  # noqa: S608
    )
    await cur.execute(query + " FOR UPDATE", ids)
    current = {r[0]: (r[1], r[2]) for r in await cur.fetchall()}
    counts, chosen = [], {}
    for p in items:
        ok = current.get(p["op_id"]) == (SENDING, p["token"]) and p["op_id"] not in chosen
        if ok:
            chosen[p["op_id"]] = p
        counts.append(1 if ok else 0)
    if chosen:
        await _write_outcomes(cur, list(chosen.values()), None)
        if cur.rowcount != len(chosen):  # the rows are locked: cannot happen unless the database lies
            raise RuntimeError(f"journal: {cur.rowcount} of {len(chosen)} outcomes written")
    return counts


async def _write_outcomes(cur: Any, rows: list[dict[str, Any]], token: int | None) -> None:
    """One UPDATE setting each row's own outcome (CASE on the id), only on SENDING rows."""
    sets, params = [], []
    for column, key in _OUTCOME:
        sets.append(f"{column} = CASE operation_id {' '.join(['WHEN %s THEN %s'] * len(rows))} END")
        for p in rows:
            params += [p["op_id"], _naive(p[key])]
    where = f"WHERE operation_id IN ({_marks(len(rows))}) AND status = %s"
    params += [p["op_id"] for p in rows] + [SENDING]
    if token is not None:
        where += " AND fencing_token = %s"
        params.append(token)
    await cur.execute(f"UPDATE {TABLE} SET {', '.join(sets)} {where}", params)  # noqa: S608

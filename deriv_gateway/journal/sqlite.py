"""The journal's group commit on a SQLite file: raw SQL on a sqlite3 connection in a thread of the
lane's own."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from deriv_gateway.journal.group_commit import (
    CREATED,
    FENCE_GET_SQL,
    FENCE_SQL,
    FINISH_SQL,
    INSERT_SQL,
    ROW_VALUES,
    TABLE,
    UPDATED,
    GroupCommit,
    Missed,
    past_the_fence,
)
from deriv_gateway.journal.records import FENCE_ID, SENDING, FenceMissing

T = TypeVar("T")

_INSERT = INSERT_SQL.replace("%s", "?")
_FENCE = FENCE_SQL.replace("%s", "?")
_FENCE_GET = FENCE_GET_SQL.replace("%s", "?")
_FINISH = FINISH_SQL.replace("%s", "?")


class SQLiteGroupCommit(GroupCommit):
    """The same batches on SQLite, each run whole on a plain sqlite3 connection in a thread of the
    lane's own: one hop to that thread per batch. Through SQLAlchemy and aiosqlite every statement
    was a hop of its own, with an UPDATE per outcome: half the gateway's CPU per Transfer (bench/).
    The thread is the connection's only user; BEGIN IMMEDIATE takes the write lock up front, as the
    engine's transactions do, so this lane and the engine's writers (take-over, resend) serialize.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._thread: _LaneThread | None = None  # started by the first batch, ended by close()
        self._db: sqlite3.Connection | None = None  # touched on self._thread only

    async def close(self) -> None:
        await super().close()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown()

    async def _on_thread(self, work: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            self._thread = _LaneThread(f"journal-{self.name}")
        return await self._thread.run(work, *args)

    async def _drop_connection(self) -> None:
        if self._thread is not None:
            await self._on_thread(self._close_db)

    def _close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):
                db.close()

    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.engine.url.database or "", timeout=30, isolation_level=None)
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=30000")
            self._db = db
        return self._db

    async def _commit(self, batch: list[tuple[str, dict[str, Any], asyncio.Future[Any]]]) -> list[Any]:
        if any(kind == "insert" for kind, _, _ in batch):
            await self._ensure_fence()
        items = [(kind, params) for kind, params, _ in batch]
        return await self._on_thread(self._commit_now, items)

    def _commit_now(self, items: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        db = self._open_db()
        try:
            # the usual batch: new ids only, outcomes of rows this leader still owns
            return self._commit_once(db, items, optimistic=True)
        except Missed:
            # rolled back: the same batch again, checking every row first
            return self._commit_once(db, items, optimistic=False)

    def _commit_once(
        self, db: sqlite3.Connection, items: list[tuple[str, dict[str, Any]]], *, optimistic: bool
    ) -> list[Any]:
        results: list[Any] = [None] * len(items)
        db.execute("BEGIN IMMEDIATE")
        try:
            inserts = [(i, p) for i, (kind, p) in enumerate(items) if kind == "insert"]
            if inserts:
                for i, outcome in claim_rows(db, inserts, optimistic):
                    results[i] = outcome
            finishes = [(i, p) for i, (kind, p) in enumerate(items) if kind == "finish"]
            if finishes:
                for (i, _), count in zip(finishes, finish_rows(db, finishes, optimistic), strict=True):
                    results[i] = count
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")
            raise
        return results


class _LaneThread:
    """The SQLite lane's one thread, running its work in order. Lighter than run_in_executor, which
    per batch took locks and a condition in concurrent.futures and chained two futures: here a job
    is a queue entry, and its answer one call_soon_threadsafe."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]] | None]
        self._jobs = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def run(self, work: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((work, args, future))
        return future

    def shutdown(self) -> None:
        """The thread ends after the jobs already queued (nobody waits for it)."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            work, args, future = job
            try:
                result, error = work(*args), None
            except BaseException as exc:  # the caller's to handle, as from run_in_executor
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                future.get_loop().call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _stamp(value: datetime) -> str:
    """As SQLAlchemy's SQLite DateTime stores it (naive UTC, always 6 fractional digits): the
    engine's readers parse it, and sent_before compares it as text."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _outcome(p: dict[str, Any]) -> tuple[Any, ...]:
    """The parameters of _FINISH (the outcome's columns, then the row it must still match)."""
    stamp = _stamp(p["now"])
    return (
        p["new_status"],
        p["txn"],
        p["err_code"],
        p["err_message"],
        p["res"],
        stamp,
        p["op_id"],
        SENDING,
        p["token"],
    )


def finish_rows(
    db: sqlite3.Connection, finishes: list[tuple[int, dict[str, Any]]], optimistic: bool
) -> list[int]:
    """The outcomes of a batch; per item 1 if recorded, 0 if its row is not SENDING under its token
    (or an earlier item of the batch recorded the same row). Optimistic: all in one executemany,
    which must then have matched every row, else Missed (the batch is run again checked)."""
    if optimistic and len(finishes) > 1:
        count = db.executemany(_FINISH, [_outcome(p) for _, p in finishes]).rowcount
        if count != len(finishes):
            raise Missed
        return [1] * len(finishes)
    return [db.execute(_FINISH, _outcome(p)).rowcount for _, p in finishes]


def _insert_row(values: dict[str, Any]) -> list[Any]:
    row = list(ROW_VALUES(values))
    created = row[CREATED] = _stamp(row[CREATED])
    same = values["updated_at"] is values["created_at"]  # a claim: one clock reading for both
    row[UPDATED] = created if same else _stamp(row[UPDATED])
    return row


def claim_rows(
    db: sqlite3.Connection, inserts: list[tuple[int, dict[str, Any]]], optimistic: bool
) -> list[tuple[int, Any]]:
    """The claims of a batch: pass the fence once (newest token), then insert the new ids (SQLite
    has one writer, and this one holds the write lock: nothing can change between look-up and insert).

    Optimistic: one executemany of every row, which a duplicate id fails (Missed, rolled back).
    Checked: the ids that exist are looked up first and reported as not created.
    """
    newest = max(p["fencing_token"] for _, p in inserts)
    # the fence's updated_at: the batch's newest claim time (the journal's clock, no reading of its own)
    now = _stamp(max(p["created_at"] for _, p in inserts))
    if db.execute(_FENCE, (newest, now, FENCE_ID, newest)).rowcount == 1:
        current = newest
    else:
        row = db.execute(_FENCE_GET, (FENCE_ID,)).fetchone()
        if row is None:
            raise FenceMissing("the journal's fence row is missing")
        current = int(row[0])
    kept, out = past_the_fence(inserts, newest, current)
    if not kept:
        return out
    existing: set[str] = set()
    if not optimistic:
        ids = list({p["operation_id"] for _, p in kept})
        query = f"SELECT operation_id FROM {TABLE} WHERE operation_id IN ({', '.join(['?'] * len(ids))})"  # noqa: S608
        existing = {r[0] for r in db.execute(query, ids)}
    fresh = []
    for i, p in kept:
        if p["operation_id"] in existing:
            out.append((i, False))
        else:
            existing.add(p["operation_id"])
            fresh.append(_insert_row(p))
            out.append((i, True))
    if fresh:
        try:
            db.executemany(_INSERT, fresh)
        except sqlite3.IntegrityError as exc:
            if optimistic:
                raise Missed from exc
            raise
    return out

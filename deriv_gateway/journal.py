"""The write-ahead journal of money-moving Deriv calls (table `deriv_gateway_operations`).

Row life: SENDING (committed before the frame leaves) -> DONE | FAILED | NOT_SENT.
- DONE / FAILED are final: a repeated call with the same operation id gets the stored result.
- NOT_SENT: the frame never reached Deriv's backend (not written, or refused before dispatch:
  RateLimit, validation, auth); sending again is safe.
- SENDING found by anyone but the request that wrote it means "outcome unknown": look in the
  statement before anything else.
The primary key decides between concurrent inserts (across processes). Every write after the insert
carries the writer's fencing token in its WHERE clause, so a deposed leader cannot record.

The fence: one reserved row (FENCE_ID, outside the operation id pattern) holds the highest fencing
token seen by this journal. Every write that may lead to a send (claim, take over, resend) raises it
to the writer's token, or is refused when it is already higher, in the same transaction as the write
itself, so a deposed leader cannot start an operation once a newer leader has written anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import operator
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.engine import create_engine
from persistence.tables import deriv_gateway_operations as ops

T = TypeVar("T")

SENDING = "SENDING"
DONE = "DONE"
FAILED = "FAILED"
NOT_SENT = "NOT_SENT"


# The fence row's id: never an operation id (those match ^[0-9A-Za-z-]{1,64}$), never listed as one.
FENCE_ID = "~fence"
FENCE = "FENCE"


class StaleFencingToken(Exception):
    """The row belongs to a newer leader (or moved on): this writer may not record."""

    def __init__(self, message: str, *, current: int | None = None) -> None:
        super().__init__(message)
        # the journal's fence when the refusal came from it (a newer leader's token)
        self.current = current


@dataclass(frozen=True, slots=True)
class Operation:
    operation_id: str
    kind: str
    client_loginid: str
    amount_cents: int
    currency: str
    description: str
    status: str
    attempts: int
    fencing_token: int | None
    deriv_transaction_id: int | None
    error_code: str | None
    error_message: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    def same_request(self, kind: str, client_loginid: str, amount_cents: int, currency: str) -> bool:
        return (self.kind, self.client_loginid.upper(), self.amount_cents, self.currency) == (
            kind,
            client_loginid.upper(),
            amount_cents,
            currency,
        )


def _row(row: Any) -> Operation:
    m = row._mapping
    return Operation(
        operation_id=m["operation_id"],
        kind=m["kind"],
        client_loginid=m["client_loginid"],
        amount_cents=m["amount_cents"],
        currency=m["amount_currency"],
        description=m["description"],
        status=m["status"],
        attempts=m["attempts"],
        fencing_token=m["fencing_token"],
        deriv_transaction_id=m["deriv_transaction_id"],
        error_code=m["error_code"],
        error_message=m["error_message"],
        result=json.loads(m["result"]) if m["result"] else None,
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


# json.dumps with separators builds an encoder per call; one, built once, writes the same text
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


def _now() -> datetime:
    return datetime.now(UTC)


# Statements built once (bindparam), executed many times.
_INSERT = insert(ops)
_SELECT = select(ops).where(ops.c.operation_id == bindparam("op_id"))
_FINISH = (
    update(ops)
    .where(
        and_(
            ops.c.operation_id == bindparam("op_id"),
            ops.c.status == SENDING,
            ops.c.fencing_token == bindparam("token"),
        )
    )
    .values(
        status=bindparam("new_status"),
        deriv_transaction_id=bindparam("txn"),
        error_code=bindparam("err_code"),
        error_message=bindparam("err_message"),
        result=bindparam("res"),
        updated_at=bindparam("now"),
    )
)
# updated_at is left alone: for a SENDING row it is the time of its last send, which the settle
# window ("not in the statement this long after the send": never executed) is measured from.
_TAKE_OVER = (
    update(ops)
    .where(
        and_(
            ops.c.operation_id == bindparam("op_id"),
            ops.c.status == SENDING,
            or_(ops.c.fencing_token.is_(None), ops.c.fencing_token <= bindparam("token")),
        )
    )
    .values(fencing_token=bindparam("new_token"))
)
_RESEND = (
    update(ops)
    .where(
        and_(
            ops.c.operation_id == bindparam("op_id"),
            ops.c.status.in_([NOT_SENT, SENDING]),
            ops.c.status == bindparam("expected_status"),
            or_(ops.c.fencing_token.is_(None), ops.c.fencing_token <= bindparam("token")),
        )
    )
    .values(
        status=SENDING,
        attempts=ops.c.attempts + 1,
        fencing_token=bindparam("new_token"),
        error_code=None,
        error_message=None,
        updated_at=bindparam("now"),
    )
)


# The fence. Why one row and not MAX(fencing_token) over the operations: under REPEATABLE READ a
# plain SELECT MAX() is a snapshot read that neither sees nor waits for a newer leader's uncommitted
# claim, so an old and a new leader could both pass the check and commit (write skew); a locking
# MAX() would need next-key locks over the whole index (blocking every insert) and a full scan.
# The UPDATE below is a locking read of the latest committed fence: its row lock orders every claim
# against a new leader's raise. Either the old leader's claim commits first (and the new leader's
# sweep, which runs after its raise, finds that SENDING row), or the raise commits first and the
# UPDATE no longer matches. On SQLite, BEGIN IMMEDIATE serializes the writers anyway.
_FENCE_RAISE = (
    update(ops)
    .where(and_(ops.c.operation_id == FENCE_ID, ops.c.fencing_token <= bindparam("token")))
    .values(fencing_token=bindparam("token"), updated_at=bindparam("now"))
)
_FENCE_GET = select(ops.c.fencing_token).where(ops.c.operation_id == FENCE_ID)


class FenceMissing(RuntimeError):
    """The fence row was deleted behind the journal's back: created again on the next write."""


async def _pass_fence(conn: AsyncConnection, token: int) -> None:
    """Raise the fence to `token` inside the caller's transaction, or refuse (StaleFencingToken)."""
    if (await conn.execute(_FENCE_RAISE, {"token": token, "now": _now()})).rowcount == 1:
        return
    current = (await conn.execute(_FENCE_GET)).scalar()
    if current is None:
        raise FenceMissing("the journal's fence row is missing")
    raise StaleFencingToken(f"fencing token {token} is older than the journal's {current}", current=current)


def _fence_row(now: datetime) -> dict[str, Any]:
    return {
        "operation_id": FENCE_ID,
        "kind": "fence",
        "client_loginid": "",
        "amount_cents": 0,
        "amount_currency": "",
        "description": "highest fencing token seen by this journal",
        "status": FENCE,
        "attempts": 0,
        "fencing_token": 0,
        "deriv_transaction_id": None,
        "error_code": None,
        "error_message": None,
        "result": None,
        "created_at": now,
        "updated_at": now,
    }


class _GroupCommit:
    """Group commit: claims and outcomes queued while a transaction commits go into the next one.

    One transaction (one fsync) then covers many operations; each caller still returns only after
    its own row is committed, so "committed before the frame leaves" holds for every operation.
    A lane keeps one connection of its own. This class queues and batches; a subclass commits a
    batch: _SQLiteGroupCommit on a SQLite file, _MySQLGroupCommit on MariaDB/MySQL.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        ensure_fence: Callable[[], Awaitable[None]],
        name: str,
        max_batch: int = 256,
    ) -> None:
        self.engine = engine
        self._ensure_fence = ensure_fence
        self.name = name
        self.max_batch = max_batch
        self._queue: list[tuple[str, dict[str, Any], asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def submit(self, kind: str, params: dict[str, Any]) -> Any:
        if not self._tasks or self._tasks[0].done():  # one committer task; started again if it ended
            for task in self._tasks:
                task.cancel()
            self._tasks = [asyncio.create_task(self._run(), name=f"journal-group-commit-{self.name}")]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((kind, params, future))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        """Close the lane's connection (after a failed batch, or at close); the next batch opens one."""
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._queue:
                self._wakeup.clear()
                continue
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                results = await self._commit_batch(batch)
                for (_, _, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)

    async def _commit_batch(self, batch: list[tuple[str, dict[str, Any], asyncio.Future[Any]]]) -> list[Any]:
        for attempt in range(3):
            try:
                return await self._commit(batch)
            except Exception as exc:
                if _duplicate(exc):
                    # another process inserted one of these ids meanwhile: one transaction each
                    return [await self._commit_one(item) for item in batch]
                # rolled back: nothing of the batch is committed (or, the connection lost during
                # COMMIT, all of it): running it again is safe either way, every statement
                # re-checks its row (an existing claim reads as not created, a recorded outcome as stale)
                await self._drop_connection()
                if attempt < 2 and _transient(exc):
                    continue
                return [exc] * len(batch)
        raise AssertionError("unreachable")

    async def _commit_one(self, item: tuple[str, dict[str, Any], asyncio.Future[Any]]) -> Any:
        try:
            return (await self._commit([item]))[0]
        except Exception as exc:
            if _duplicate(exc):
                return False  # the insert lost: the row exists
            await self._drop_connection()
            return exc

    async def _commit(self, batch: list[tuple[str, dict[str, Any], asyncio.Future[Any]]]) -> list[Any]:
        """Commit the batch in one transaction; per item, its answer (or exception) in order."""
        raise NotImplementedError


class _MySQLGroupCommit(_GroupCommit):
    """The same batches on MariaDB/MySQL, on a raw aiomysql connection of the lane's own.

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
            import aiomysql

            _, params = self.engine.dialect.create_connect_args(self.engine.url)
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
        except _Missed:
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
                    for i, outcome in await _mysql_claims(cur, inserts, optimistic):
                        results[i] = outcome
                if finishes:
                    counts = await _mysql_finishes(cur, [p for _, p in finishes], optimistic)
                    for (i, _), count in zip(finishes, counts, strict=True):
                        results[i] = count
            await raw.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                await raw.rollback()
            raise
        return results


class _SQLiteGroupCommit(_GroupCommit):
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
        except _Missed:
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
                for i, outcome in _sqlite_claims(db, inserts, optimistic):
                    results[i] = outcome
            finishes = [(i, p) for i, (kind, p) in enumerate(items) if kind == "finish"]
            if finishes:
                for (i, _), count in zip(finishes, _sqlite_finishes(db, finishes, optimistic), strict=True):
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


def _sqlite_stamp(value: datetime) -> str:
    """As SQLAlchemy's SQLite DateTime stores it (naive UTC, always 6 fractional digits): the
    engine's readers parse it, and sent_before compares it as text."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_outcome(p: dict[str, Any]) -> tuple[Any, ...]:
    """The parameters of _SQLITE_FINISH (the outcome's columns, then the row it must still match)."""
    stamp = _sqlite_stamp(p["now"])
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


def _sqlite_finishes(
    db: sqlite3.Connection, finishes: list[tuple[int, dict[str, Any]]], optimistic: bool
) -> list[int]:
    """The outcomes of a batch; per item 1 if recorded, 0 if its row is not SENDING under its token
    (or an earlier item of the batch recorded the same row). Optimistic: all in one executemany,
    which must then have matched every row, else _Missed (the batch is run again checked)."""
    if optimistic and len(finishes) > 1:
        count = db.executemany(_SQLITE_FINISH, [_sqlite_outcome(p) for _, p in finishes]).rowcount
        if count != len(finishes):
            raise _Missed
        return [1] * len(finishes)
    return [db.execute(_SQLITE_FINISH, _sqlite_outcome(p)).rowcount for _, p in finishes]


def _sqlite_row(values: dict[str, Any]) -> list[Any]:
    row = list(_ROW_VALUES(values))
    created = row[_CREATED] = _sqlite_stamp(row[_CREATED])
    same = values["updated_at"] is values["created_at"]  # a claim: one clock reading for both
    row[_UPDATED] = created if same else _sqlite_stamp(row[_UPDATED])
    return row


def _past_the_fence(
    inserts: list[tuple[int, dict[str, Any]]], newest: int, current: int
) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, Any]]]:
    """A batch passes the fence once, with its newest token: the claims carrying that token go on
    when the fence is now that token; every other claim gets its StaleFencingToken."""
    kept: list[tuple[int, dict[str, Any]]] = []
    refused: list[tuple[int, Any]] = []
    for i, p in inserts:
        if p["fencing_token"] == newest and current == newest:
            kept.append((i, p))
        else:
            stale = f"operation {p['operation_id']}: fencing token {p['fencing_token']} is stale"
            refused.append((i, StaleFencingToken(stale, current=current)))
    return kept, refused


def _sqlite_claims(
    db: sqlite3.Connection, inserts: list[tuple[int, dict[str, Any]]], optimistic: bool
) -> list[tuple[int, Any]]:
    """The claims of a batch: pass the fence once (newest token), then insert the new ids (SQLite
    has one writer, and this one holds the write lock: nothing can change between look-up and insert).

    Optimistic: one executemany of every row, which a duplicate id fails (_Missed, rolled back).
    Checked: the ids that exist are looked up first and reported as not created.
    """
    newest = max(p["fencing_token"] for _, p in inserts)
    if db.execute(_SQLITE_FENCE, (newest, _sqlite_stamp(_now()), FENCE_ID, newest)).rowcount == 1:
        current = newest
    else:
        row = db.execute(_SQLITE_FENCE_GET, (FENCE_ID,)).fetchone()
        if row is None:
            raise FenceMissing("the journal's fence row is missing")
        current = int(row[0])
    kept, out = _past_the_fence(inserts, newest, current)
    if not kept:
        return out
    existing: set[str] = set()
    if not optimistic:
        ids = list({p["operation_id"] for _, p in kept})
        query = f"SELECT operation_id FROM {_TABLE} WHERE operation_id IN ({', '.join(['?'] * len(ids))})"  # noqa: S608
        existing = {r[0] for r in db.execute(query, ids)}
    fresh = []
    for i, p in kept:
        if p["operation_id"] in existing:
            out.append((i, False))
        else:
            existing.add(p["operation_id"])
            fresh.append(_sqlite_row(p))
            out.append((i, True))
    if fresh:
        try:
            db.executemany(_SQLITE_INSERT, fresh)
        except sqlite3.IntegrityError as exc:
            if optimistic:
                raise _Missed from exc
            raise
    return out


class _Missed(Exception):
    """The optimistic form of a batch does not fit (an id exists, a row moved on): redo it checked."""


# Only the table name, column names and placeholder counts are formatted into these statements
# (hence the S608 waivers); every value is a bound parameter.
_TABLE = ops.name
_COLUMNS = [c.name for c in ops.columns]
_MYSQL_INSERT = f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})"  # noqa: S608
_MYSQL_FENCE = (
    f"UPDATE {_TABLE} SET fencing_token = %s, updated_at = %s WHERE operation_id = %s AND fencing_token <= %s"  # noqa: S608
)
_MYSQL_FENCE_GET = f"SELECT fencing_token FROM {_TABLE} WHERE operation_id = %s"  # noqa: S608
_MYSQL_FINISH = (
    f"UPDATE {_TABLE} SET status = %s, deriv_transaction_id = %s, error_code = %s, error_message = %s, "  # noqa: S608
    f"result = %s, updated_at = %s WHERE operation_id = %s AND status = %s AND fencing_token = %s"
)
_ROW_VALUES = operator.itemgetter(*_COLUMNS)  # a values dict -> its row, in _COLUMNS order
_CREATED = _COLUMNS.index("created_at")
_UPDATED = _COLUMNS.index("updated_at")
_SQLITE_INSERT = _MYSQL_INSERT.replace("%s", "?")
_SQLITE_FENCE = _MYSQL_FENCE.replace("%s", "?")
_SQLITE_FENCE_GET = _MYSQL_FENCE_GET.replace("%s", "?")
_SQLITE_FINISH = _MYSQL_FINISH.replace("%s", "?")
# per-row values of a multi-row outcome update: (column, params key)
_MYSQL_OUTCOME = [
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


async def _mysql_claims(
    cur: Any, inserts: list[tuple[int, dict[str, Any]]], optimistic: bool
) -> list[tuple[int, Any]]:
    """The claims of a batch: pass the fence once (newest token), then insert the new ids.

    Optimistic: one multi-row INSERT, which a duplicate id fails as a whole (_Missed). Checked: the
    ids that exist are looked up first and reported as not created.
    """
    newest = max(p["fencing_token"] for _, p in inserts)
    now = _naive(_now())
    await cur.execute(_MYSQL_FENCE, (newest, now, FENCE_ID, newest))
    if cur.rowcount == 1:
        current = newest
    else:
        await cur.execute(_MYSQL_FENCE_GET, (FENCE_ID,))
        row = await cur.fetchone()
        if row is None:
            raise FenceMissing("the journal's fence row is missing")
        current = int(row[0])
    kept, out = _past_the_fence(inserts, newest, current)
    if not kept:
        return out
    existing: set[str] = set()
    if not optimistic:
        ids = list({p["operation_id"] for _, p in kept})
        query = f"SELECT operation_id FROM {_TABLE} WHERE operation_id IN ({_marks(len(ids))})"  # noqa: S608
        await cur.execute(query, ids)
        existing = {r[0] for r in await cur.fetchall()}
    fresh = []
    for i, p in kept:
        if p["operation_id"] in existing:
            if optimistic:
                raise _Missed
            out.append((i, False))
        else:
            existing.add(p["operation_id"])
            fresh.append(tuple(_naive(p[c]) for c in _COLUMNS))
            out.append((i, True))
    if fresh:
        try:
            await cur.executemany(_MYSQL_INSERT, fresh)  # one multi-row INSERT
        except Exception as exc:
            if optimistic and _duplicate(exc):
                raise _Missed from exc
            raise
    return out


async def _mysql_finishes(cur: Any, items: list[dict[str, Any]], optimistic: bool) -> list[int]:
    """The outcomes of a batch, with one UPDATE for all of them; per item 1 if recorded, 0 if its row
    is not SENDING under its token (or an earlier item of the batch recorded the same row).

    Optimistic (distinct rows, one token): the UPDATE checks status and token itself and must match
    every row, else _Missed. Checked: a locking read decides which items may write first.
    """
    if len(items) == 1:
        p = items[0]
        values = [_naive(p[key]) for _, key in _MYSQL_OUTCOME]
        await cur.execute(_MYSQL_FINISH, (*values, p["op_id"], SENDING, p["token"]))
        return [int(cur.rowcount)]
    tokens = {p["token"] for p in items}
    ids = list({p["op_id"] for p in items})
    if optimistic and len(tokens) == 1 and len(ids) == len(items):
        await _mysql_write_outcomes(cur, items, tokens.pop())
        if cur.rowcount != len(items):
            raise _Missed
        return [1] * len(items)
    query = (
        f"SELECT operation_id, status, fencing_token FROM {_TABLE} WHERE operation_id IN ({_marks(len(ids))})"  # noqa: S608
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
        await _mysql_write_outcomes(cur, list(chosen.values()), None)
        if cur.rowcount != len(chosen):  # the rows are locked: cannot happen unless the database lies
            raise RuntimeError(f"journal: {cur.rowcount} of {len(chosen)} outcomes written")
    return counts


async def _mysql_write_outcomes(cur: Any, rows: list[dict[str, Any]], token: int | None) -> None:
    """One UPDATE setting each row's own outcome (CASE on the id), only on SENDING rows."""
    sets, params = [], []
    for column, key in _MYSQL_OUTCOME:
        sets.append(f"{column} = CASE operation_id {' '.join(['WHEN %s THEN %s'] * len(rows))} END")
        for p in rows:
            params += [p["op_id"], _naive(p[key])]
    where = f"WHERE operation_id IN ({_marks(len(rows))}) AND status = %s"
    params += [p["op_id"] for p in rows] + [SENDING]
    if token is not None:
        where += " AND fencing_token = %s"
        params.append(token)
    await cur.execute(f"UPDATE {_TABLE} SET {', '.join(sets)} {where}", params)  # noqa: S608


def _duplicate(exc: BaseException) -> bool:
    if isinstance(exc, IntegrityError | sqlite3.IntegrityError):
        return True
    import pymysql

    return isinstance(exc, pymysql.err.IntegrityError) and bool(exc.args) and exc.args[0] == 1062


def _transient(exc: BaseException) -> bool:
    """A deadlock, a lock wait timeout or a lost connection: the batch may simply run again."""
    import pymysql

    if isinstance(exc, sqlite3.OperationalError):  # busy past busy_timeout, or the file went away
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
        code = exc.args[0] if exc.args else None
        # deadlock, lock wait timeout; gone away, lost, cannot connect; connection already closed
        return code in (1205, 1213, 2006, 2013, 2003, 0) or isinstance(exc, pymysql.err.InterfaceError)
    return False


class Journal:
    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = False, group_commit: bool = True) -> None:
        self.engine = engine
        self._owns_engine = owns_engine
        self._fence_ready = False
        self._group: _GroupCommit | None = None
        self._outcomes: _GroupCommit | None = None
        if group_commit:
            if engine.dialect.name == "mysql":
                # Outcomes commit in a lane of their own, beside the claims, so a batch of claims never
                # waits for a batch of outcomes (InnoDB group-commits the two fsyncs).
                self._group = _MySQLGroupCommit(engine, self._ensure_fence, "claims")
                self._outcomes = _MySQLGroupCommit(engine, self._ensure_fence, "outcomes")
            elif engine.url.database not in (None, "", ":memory:"):
                # SQLite has one writer at a time: one lane (its own connection to the same file)
                self._group = self._outcomes = _SQLiteGroupCommit(engine, self._ensure_fence, "journal")
            # else an in-memory SQLite, which a connection of the lane's own would not see: one
            # transaction per write, through the engine

    @classmethod
    def from_url(cls, url: str) -> Journal:
        return cls(create_engine(url), owns_engine=True)

    async def close(self) -> None:
        for group in (self._group, self._outcomes):
            if group is not None:
                await group.close()
        if self._owns_engine:
            await self.engine.dispose()

    async def _ensure_fence(self) -> None:
        """Create the fence row (token 0) if this database has none yet; once per Journal."""
        if self._fence_ready:
            return
        async with self.engine.connect() as conn:
            exists = (await conn.execute(_FENCE_GET)).first() is not None
        if not exists:
            with contextlib.suppress(IntegrityError):  # another process created it meanwhile
                async with self.engine.begin() as conn:
                    await conn.execute(_INSERT, _fence_row(_now()))
        self._fence_ready = True

    @contextlib.asynccontextmanager
    async def _fenced(self, token: int) -> AsyncIterator[AsyncConnection]:
        """A transaction that has passed the fence with `token` (raised it, or was refused)."""
        await self._ensure_fence()
        try:
            async with self.engine.begin() as conn:
                await _pass_fence(conn, token)
                yield conn
        except FenceMissing:
            self._fence_ready = False
            raise

    async def raise_fence(self, token: int) -> None:
        """A new leader's first write: from now on, writers with older tokens cannot start operations."""
        async with self._fenced(token):
            pass

    async def fence(self) -> int:
        """The highest fencing token this journal has seen (0 if none)."""
        async with self.engine.connect() as conn:
            return int((await conn.execute(_FENCE_GET)).scalar() or 0)

    async def get(self, operation_id: str) -> Operation | None:
        if operation_id == FENCE_ID:
            return None
        async with self.engine.connect() as conn:
            row = (await conn.execute(_SELECT, {"op_id": operation_id})).first()
        return _row(row) if row is not None else None

    async def claim(
        self,
        *,
        operation_id: str,
        kind: str,
        client_loginid: str,
        amount_cents: int,
        currency: str,
        description: str,
        token: int,
    ) -> tuple[bool, Operation]:
        """Insert the SENDING row and commit, having passed the fence in the same transaction.

        Returns (True, row) if this call created it, else (False, existing row). Raises
        StaleFencingToken when a newer token has been seen by this journal.
        """
        now = _now()
        values = {
            "operation_id": operation_id,
            "kind": kind,
            "client_loginid": client_loginid,
            "amount_cents": amount_cents,
            "amount_currency": currency,
            "description": description,
            "status": SENDING,
            "attempts": 1,
            "fencing_token": token,
            "deriv_transaction_id": None,
            "error_code": None,
            "error_message": None,
            "result": None,
            "created_at": now,
            "updated_at": now,
        }
        created = await self._insert(values)
        if created:
            return True, _row_from_values(values)
        existing = await self.get(operation_id)
        if existing is None:  # inserted and deleted in between: not something the gateway does
            raise RuntimeError(f"operation {operation_id} vanished")
        return False, existing

    async def _insert(self, values: dict[str, Any]) -> bool:
        if self._group is not None:
            try:
                result = await self._group.submit("insert", values)
            except FenceMissing:
                self._fence_ready = False
                raise
            return bool(result)
        try:
            async with self._fenced(values["fencing_token"]) as conn:
                await conn.execute(_INSERT, values)
        except IntegrityError:
            return False
        return True

    async def record_unjournaled(
        self,
        *,
        operation_id: str,
        kind: str,
        client_loginid: str,
        amount_cents: int,
        currency: str,
        description: str,
        token: int,
        deriv_transaction_id: int,
        result: dict[str, Any],
    ) -> bool:
        """A DONE row for an operation found in Deriv's statement with no row here (a lost journal row).

        False if a row with this id exists (then that row is the one to read).
        """
        now = _now()
        values = {
            "operation_id": operation_id,
            "kind": kind,
            "client_loginid": client_loginid,
            "amount_cents": amount_cents,
            "amount_currency": currency,
            "description": description,
            "status": DONE,
            "attempts": 0,
            "fencing_token": token,
            "deriv_transaction_id": deriv_transaction_id,
            "error_code": None,
            "error_message": None,
            "result": _compact_json(result),
            "created_at": now,
            "updated_at": now,
        }
        try:
            async with self._fenced(token) as conn:
                await conn.execute(_INSERT, values)
        except IntegrityError:
            return False
        return True

    async def finish(
        self,
        operation_id: str,
        token: int,
        status: str,
        *,
        deriv_transaction_id: int | None = None,
        result: dict[str, Any] | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        """Record the outcome of the SENDING row this writer owns (fencing token compared in the WHERE).

        No fence check: this records what already happened to a frame this writer sent, which stays
        true after a newer leader appears; the row's own token keeps it from overwriting a take-over.
        """
        params = {
            "op_id": operation_id,
            "token": token,
            "new_status": status,
            "txn": deriv_transaction_id,
            "err_code": error_code,
            "err_message": (error_message or "")[:255] or None,
            "res": _compact_json(result) if result is not None else None,
            "now": _now(),
        }
        if self._outcomes is not None:
            count = await self._outcomes.submit("finish", params)
        else:
            async with self.engine.begin() as conn:
                count = (await conn.execute(_FINISH, params)).rowcount
        if count != 1:
            raise StaleFencingToken(f"operation {operation_id}: not SENDING under fencing token {token}")

    async def take_over(self, operation_id: str, token: int) -> None:
        """Make a SENDING row of an earlier attempt (or an earlier leader) ours before resolving it."""
        async with self._fenced(token) as conn:
            count = (
                await conn.execute(_TAKE_OVER, {"op_id": operation_id, "token": token, "new_token": token})
            ).rowcount
        if count != 1:
            raise StaleFencingToken(f"operation {operation_id}: cannot take over with fencing token {token}")

    async def resend(self, operation_id: str, token: int, expected_status: str) -> None:
        """NOT_SENT (or a SENDING proven absent from the statement) -> SENDING again, attempts + 1."""
        async with self._fenced(token) as conn:
            count = (
                await conn.execute(
                    _RESEND,
                    {
                        "op_id": operation_id,
                        "token": token,
                        "new_token": token,
                        "expected_status": expected_status,
                        "now": _now(),
                    },
                )
            ).rowcount
        if count != 1:
            raise StaleFencingToken(f"operation {operation_id}: cannot resend with fencing token {token}")

    async def list_sending(
        self, limit: int = 100, *, sent_before: datetime | None = None, after: str = ""
    ) -> list[Operation]:
        """SENDING rows in operation id order (`after`: paging), optionally last sent before a time."""
        query = select(ops).where(and_(ops.c.status == SENDING, ops.c.operation_id > after))
        if sent_before is not None:
            query = query.where(ops.c.updated_at < sent_before)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(ops.c.operation_id).limit(limit))).all()
        return [_row(r) for r in rows]


def _row_from_values(values: dict[str, Any]) -> Operation:
    return Operation(
        operation_id=values["operation_id"],
        kind=values["kind"],
        client_loginid=values["client_loginid"],
        amount_cents=values["amount_cents"],
        currency=values["amount_currency"],
        description=values["description"],
        status=values["status"],
        attempts=values["attempts"],
        fencing_token=values["fencing_token"],
        deriv_transaction_id=None,
        error_code=None,
        error_message=None,
        result=None,
        created_at=values["created_at"],
        updated_at=values["updated_at"],
    )

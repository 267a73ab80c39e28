"""Group commit, the part both databases share: the queue and its batches, the retries, how a
batch passes the fence once, and the raw SQL text both lanes send (MariaDB's placeholders; the
SQLite lane swaps them). One module per database commits a batch: mariadb and sqlite."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import operator
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from deriv_gateway.journal.records import JournalClosed, StaleFencingToken
from persistence.tables import deriv_gateway_operations as ops


class GroupCommit:
    """Group commit: claims and outcomes queued while a transaction commits go into the next one.

    One transaction (one fsync) then covers many operations; each caller still returns only after
    its own row is committed, so "committed before the frame leaves" holds for every operation.
    A lane keeps one connection of its own. This class queues and batches; a subclass commits a
    batch: SQLiteGroupCommit on a SQLite file, MySQLGroupCommit on MariaDB/MySQL.
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
        queued, self._queue = self._queue, []
        _abandon(queued)
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
                try:
                    results = await self._commit_batch(batch)
                except asyncio.CancelledError:
                    _abandon(batch)  # closed mid-batch: its callers must not wait for ever
                    raise
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
                if duplicate(exc):
                    # another process inserted one of these ids meanwhile: one transaction each
                    return [await self._commit_one(item) for item in batch]
                # rolled back: nothing of the batch is committed (or, the connection lost during
                # COMMIT, all of it): running it again is safe either way, every statement
                # re-checks its row (an existing claim reads as not created, a recorded outcome as stale)
                await self._drop_connection()
                if attempt < 2 and transient(exc):
                    continue
                return [exc] * len(batch)
        raise AssertionError("unreachable")

    async def _commit_one(self, item: tuple[str, dict[str, Any], asyncio.Future[Any]]) -> Any:
        try:
            return (await self._commit([item]))[0]
        except Exception as exc:
            if duplicate(exc):
                return False  # the insert lost: the row exists
            await self._drop_connection()
            return exc

    async def _commit(self, batch: list[tuple[str, dict[str, Any], asyncio.Future[Any]]]) -> list[Any]:
        """Commit the batch in one transaction; per item, its answer (or exception) in order."""
        raise NotImplementedError


def _abandon(items: list[tuple[str, dict[str, Any], asyncio.Future[Any]]]) -> None:
    """The lane closed before these were answered: each caller gets JournalClosed. A batch the lane
    had already sent may still commit; its claims are then SENDING rows the next sweep settles."""
    for _, _, future in items:
        if not future.done():
            future.set_exception(JournalClosed("the journal closed before this write was answered"))


def past_the_fence(
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


class Missed(Exception):
    """The optimistic form of a batch does not fit (an id exists, a row moved on): redo it checked."""


# Only the table name, column names and placeholder counts are formatted into these statements
# (hence the S608 waivers); every value is a bound parameter.
TABLE = ops.name
COLUMNS = [c.name for c in ops.columns]
INSERT_SQL = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"  # noqa: S608
FENCE_SQL = (
    f"UPDATE {TABLE} SET fencing_token = %s, updated_at = %s WHERE operation_id = %s AND fencing_token <= %s"  # noqa: S608
)
FENCE_GET_SQL = f"SELECT fencing_token FROM {TABLE} WHERE operation_id = %s"  # noqa: S608
FINISH_SQL = (
    f"UPDATE {TABLE} SET status = %s, deriv_transaction_id = %s, error_code = %s, error_message = %s, "  # noqa: S608
    f"result = %s, updated_at = %s WHERE operation_id = %s AND status = %s AND fencing_token = %s"
)
ROW_VALUES = operator.itemgetter(*COLUMNS)  # a values dict -> its row, in COLUMNS order
CREATED = COLUMNS.index("created_at")
UPDATED = COLUMNS.index("updated_at")


@functools.cache
def driver_errors(name: str) -> tuple[type[Exception], ...]:
    """The exception class `name` (IntegrityError, OperationalError, InterfaceError) of each MySQL
    driver the journal's raw connection may be: PyMySQL's (aiomysql raises them) and asyncmy's,
    which are not PyMySQL's subclasses (asyncmy is optional)."""
    import pymysql

    found: list[type[Exception]] = [getattr(pymysql.err, name)]
    with contextlib.suppress(ImportError):
        from asyncmy import errors

        found.append(getattr(errors, name))
    return tuple(found)


def duplicate(exc: BaseException) -> bool:
    if isinstance(exc, IntegrityError | sqlite3.IntegrityError):
        return True
    return isinstance(exc, driver_errors("IntegrityError")) and bool(exc.args) and exc.args[0] == 1062


def transient(exc: BaseException) -> bool:
    """A deadlock, a lock wait timeout or a lost connection: the batch may simply run again."""
    if isinstance(exc, sqlite3.OperationalError):  # busy past busy_timeout, or the file went away
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    closed = driver_errors("InterfaceError")
    if isinstance(exc, driver_errors("OperationalError") + closed):
        code = exc.args[0] if exc.args else None
        # deadlock, lock wait timeout; gone away, lost, cannot connect; connection already closed
        return code in (1205, 1213, 2006, 2013, 2003, 0) or isinstance(exc, closed)
    return False

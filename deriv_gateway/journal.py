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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from persistence.engine import create_engine
from persistence.tables import deriv_gateway_operations as ops

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
    """

    def __init__(
        self,
        engine: AsyncEngine,
        ensure_fence: Callable[[], Awaitable[None]],
        max_batch: int = 256,
        lanes: int | None = None,
    ) -> None:
        self.engine = engine
        self._ensure_fence = ensure_fence
        self.max_batch = max_batch
        # lanes > 1 commits several batches at once (server databases only; measured no gain here)
        self.lanes = lanes or 1
        self._queue: list[tuple[str, dict[str, Any], asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def submit(self, kind: str, params: dict[str, Any]) -> Any:
        if not self._tasks or any(t.done() for t in self._tasks):
            for task in self._tasks:
                task.cancel()
            self._tasks = [
                asyncio.create_task(self._run(), name=f"journal-group-commit-{i}") for i in range(self.lanes)
            ]
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

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._queue:
                self._wakeup.clear()
                continue
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                try:
                    results = await self._commit(batch)
                except IntegrityError:
                    # another process inserted one of these ids meanwhile: one transaction each
                    results = [await self._commit_one(item) for item in batch]
                except Exception as exc:
                    results = [exc] * len(batch)
                for (_, _, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)

    async def _commit_one(self, item: tuple[str, dict[str, Any], asyncio.Future[Any]]) -> Any:
        try:
            return (await self._commit([item]))[0]
        except IntegrityError:
            return False  # the insert lost: the row exists
        except Exception as exc:
            return exc

    async def _commit(self, batch: list[tuple[str, dict[str, Any], asyncio.Future[Any]]]) -> list[Any]:
        results: list[Any] = [None] * len(batch)
        inserts = [(i, p) for i, (kind, p, _) in enumerate(batch) if kind == "insert"]
        if inserts:
            await self._ensure_fence()
        async with self.engine.begin() as conn:
            if inserts:
                # one fence check per batch, with its newest token; older tokens in it are refused
                newest = max(p["fencing_token"] for _, p in inserts)
                refused: StaleFencingToken | None = None
                try:
                    await _pass_fence(conn, newest)
                except StaleFencingToken as exc:
                    refused = exc
                kept = []
                for i, p in inserts:
                    if refused is None and p["fencing_token"] == newest:
                        kept.append((i, p))
                    else:
                        results[i] = StaleFencingToken(
                            f"operation {p['operation_id']}: fencing token {p['fencing_token']} is stale",
                            current=refused.current if refused is not None else newest,
                        )
                inserts = kept
            if inserts:
                ids = list({p["operation_id"] for _, p in inserts})
                existing = set(
                    (
                        await conn.execute(select(ops.c.operation_id).where(ops.c.operation_id.in_(ids)))
                    ).scalars()
                )
                fresh: list[dict[str, Any]] = []
                for i, p in inserts:
                    if p["operation_id"] in existing:
                        results[i] = False
                    else:
                        existing.add(p["operation_id"])
                        fresh.append(p)
                        results[i] = True
                if fresh:
                    await conn.execute(_INSERT, fresh)
            for i, (kind, p, _) in enumerate(batch):
                if kind == "finish":
                    results[i] = (await conn.execute(_FINISH, p)).rowcount
        return results


class Journal:
    def __init__(self, engine: AsyncEngine, *, owns_engine: bool = False, group_commit: bool = True) -> None:
        self.engine = engine
        self._owns_engine = owns_engine
        self._fence_ready = False
        self._group = _GroupCommit(engine, self._ensure_fence) if group_commit else None

    @classmethod
    def from_url(cls, url: str) -> Journal:
        return cls(create_engine(url), owns_engine=True)

    async def close(self) -> None:
        if self._group is not None:
            await self._group.close()
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
            "result": json.dumps(result, separators=(",", ":")),
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
            "res": json.dumps(result, separators=(",", ":")) if result is not None else None,
            "now": _now(),
        }
        if self._group is not None:
            count = await self._group.submit("finish", params)
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

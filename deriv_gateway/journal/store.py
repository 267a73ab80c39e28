"""The journal itself (Journal): claims, outcomes, take-overs and resends of money operations, each
behind the fence; group-committed through the lane of its database (mariadb, sqlite), or one
transaction per write through the engine (an in-memory SQLite)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from deriv_gateway.journal.group_commit import GroupCommit
from deriv_gateway.journal.mariadb import MySQLGroupCommit
from deriv_gateway.journal.records import (
    DONE,
    FENCE,
    FENCE_ID,
    NOT_SENT,
    SENDING,
    FenceMissing,
    Operation,
    StaleFencingToken,
    claimed_row,
    compact_json,
    row_of,
)
from deriv_gateway.journal.sqlite import SQLiteGroupCommit
from domain.shared.clock import Clock, SystemClock
from persistence.engine import create_engine
from persistence.tables import deriv_gateway_operations as ops

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


async def _pass_fence(conn: AsyncConnection, token: int, now: datetime) -> None:
    """Raise the fence to `token` inside the caller's transaction, or refuse (StaleFencingToken)."""
    if (await conn.execute(_FENCE_RAISE, {"token": token, "now": now})).rowcount == 1:
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


class Journal:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        owns_engine: bool = False,
        group_commit: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.engine = engine
        # every timestamp the journal writes; the gateway compares them with the same clock's "now"
        self.clock: Clock = clock or SystemClock()
        self._owns_engine = owns_engine
        self._fence_ready = False
        self._group: GroupCommit | None = None
        self._outcomes: GroupCommit | None = None
        if group_commit:
            if engine.dialect.name == "mysql":
                # Outcomes commit in a lane of their own, beside the claims, so a batch of claims never
                # waits for a batch of outcomes (InnoDB group-commits the two fsyncs).
                self._group = MySQLGroupCommit(engine, self._ensure_fence, "claims")
                self._outcomes = MySQLGroupCommit(engine, self._ensure_fence, "outcomes")
            elif engine.url.database not in (None, "", ":memory:"):
                # SQLite has one writer at a time: one lane (its own connection to the same file)
                self._group = self._outcomes = SQLiteGroupCommit(engine, self._ensure_fence, "journal")
            # else an in-memory SQLite, which a connection of the lane's own would not see: one
            # transaction per write, through the engine

    @classmethod
    def from_url(cls, url: str, *, clock: Clock | None = None) -> Journal:
        return cls(create_engine(url), owns_engine=True, clock=clock)

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
                    await conn.execute(_INSERT, _fence_row(self.clock.now()))
        self._fence_ready = True

    @contextlib.asynccontextmanager
    async def _fenced(self, token: int) -> AsyncIterator[AsyncConnection]:
        """A transaction that has passed the fence with `token` (raised it, or was refused)."""
        await self._ensure_fence()
        try:
            async with self.engine.begin() as conn:
                await _pass_fence(conn, token, self.clock.now())
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
        return row_of(row) if row is not None else None

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
        now = self.clock.now()
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
            return True, claimed_row(values)
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
        now = self.clock.now()
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
            "result": compact_json(result),
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
            "res": compact_json(result) if result is not None else None,
            "now": self.clock.now(),
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
                        "now": self.clock.now(),
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
        return [row_of(r) for r in rows]

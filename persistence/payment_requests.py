"""The one read of a payment request and its stored answer (application/payments/requests.py).

One statement: the user (the columns judging a payment needs, not their devices) with their Deriv
token, whether the session (a refresh-token family) is still open, whether an idempotency record is
under the key, the Transaction under the key hash, the AML limits' figures (as
persistence/transaction_stats.py counts them) and the paying float's balance. Each was a statement
(the session and the limits a connection) of its own before. A record found (a repeat) is read by a
second statement. Statements are built once per shape.
"""

from __future__ import annotations

import functools
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, delete, exists, func, insert, literal, null, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from application.identity.ports import Usage, UsageQuery
from application.payments.requests import (
    IdempotencyKeyInFlight,
    RequestKey,
    RequestRead,
    StoredRequest,
)
from domain.payments.status import TransactionStatus
from domain.shared.ids import TransactionId, UserId, new_uuid7
from persistence import ledger_balances
from persistence.idempotency_store import IN_FLIGHT_LEASE, RETENTION
from persistence.tables import (
    deriv_accounts,
    idempotency_keys,
    ledger_accounts,
    refresh_tokens,
    transactions,
    users,
)
from persistence.user_repository import _SELECT_USER, aad, user_from_row
from security.pii import PiiCipher, default_cipher

_ik, _rt, _t = idempotency_keys, refresh_tokens, transactions
# as persistence/transaction_stats.py: failed and reversed transactions moved no money
_NO_MONEY_MOVED = [TransactionStatus.FAILED.value, TransactionStatus.REVERSED.value]

_SESSION_OPEN = exists().where(
    _rt.c.family_id == bindparam("b_family_id"),
    _rt.c.revoked_at.is_(None),
    _rt.c.expires_at > bindparam("b_now"),
)
_UNDER_KEY = select(_t.c.id).where(_t.c.idempotency_key_hash == bindparam("b_key_hash")).scalar_subquery()


_RECORD_ID = (
    select(_ik.c.id)
    .where(_ik.c.scope == bindparam("b_scope"), _ik.c.key_hash == bindparam("b_key_hash"))
    .scalar_subquery()
)
# A record is found on a repeat only: its columns are read then, not on every new request.
_RECORD = select(
    _ik.c.request_fingerprint, _ik.c.status, _ik.c.response_code, _ik.c.response_body, _ik.c.expires_at
).where(_ik.c.id == bindparam("b_id"))


_MOVED_MONEY = _t.c.status.not_in(_NO_MONEY_MOVED)


_FLOAT_BALANCE = (
    select(ledger_balances.balance())  # the changes not yet rolled up included
    .where(ledger_accounts.c.code == bindparam("b_float_code"))
    .scalar_subquery()
)


@functools.cache
def _statement(session: bool, record: bool, windows: int | None, floats: bool) -> Select[Any]:
    """The one read's shape: with the session check, the record lookup, and the AML figures (the
    velocity count and `windows` amount sums, each over the user's rows by (user_id, created_at))."""
    columns: list[Any] = [
        deriv_accounts.c.token_enc,  # deriv_accounts is joined by _SELECT_USER
        (_SESSION_OPEN if session else literal(True)).label("session_open"),
        _UNDER_KEY.label("under_key"),
        (_RECORD_ID if record else null()).label("record_id"),
        (_FLOAT_BALANCE if floats else null()).label("float_balance"),
    ]
    if windows is not None:
        mine = _t.c.user_id == users.c.id
        columns.append(
            select(func.count())
            .where(mine, _t.c.created_at >= bindparam("b_count_since"))
            .scalar_subquery()
            .label("started")
        )
        columns += [
            select(func.coalesce(func.sum(_t.c.amount_cents), 0))
            .where(
                mine,
                _t.c.created_at >= bindparam(f"b_since_{i}"),
                _t.c.amount_currency == bindparam("b_currency"),
                _MOVED_MONEY,
            )
            .scalar_subquery()
            .label(f"moved_{i}")
            for i in range(windows)
        ]
    return _SELECT_USER.add_columns(*columns).where(users.c.id == bindparam("b_user_id"))


_INSERT = insert(_ik)
# A claim this request wrote with its intent, completed with its answer (never another's answer)
_COMPLETE = (
    update(_ik)
    .where(
        _ik.c.scope == bindparam("b_scope"),
        _ik.c.key_hash == bindparam("b_key_hash"),
        _ik.c.request_fingerprint == bindparam("b_fingerprint"),
        _ik.c.status == "IN_FLIGHT",
    )
    .values(
        status="COMPLETED",
        response_code=0,
        response_body=bindparam("b_body"),
        transaction_id=bindparam("b_transaction_id"),
        expires_at=bindparam("b_expires_at"),
    )
)
_DROP_EXPIRED = delete(_ik).where(
    _ik.c.scope == bindparam("b_scope"),
    _ik.c.key_hash == bindparam("b_key_hash"),
    _ik.c.expires_at <= bindparam("b_now"),
)


class SqlPaymentRequests:
    """Implements application.payments.requests.PaymentRequests on the unit of work's connection."""

    def __init__(self, connection: AsyncConnection, cipher: PiiCipher | None = None) -> None:
        self._connection = connection
        self._cipher = cipher or default_cipher()

    async def read(
        self,
        user_id: UserId,
        *,
        now: datetime,
        session_id: str | None,
        key: RequestKey | None,
        key_hash: str,
        usage: UsageQuery | None = None,
        float_code: str | None = None,
    ) -> RequestRead:
        params: dict[str, Any] = {"b_user_id": user_id.value, "b_key_hash": key_hash}
        if float_code is not None:
            params["b_float_code"] = float_code
        if usage is not None:
            params["b_count_since"], params["b_currency"] = usage.count_since, usage.currency
            params.update({f"b_since_{i}": since for i, since in enumerate(usage.amounts_since)})
        session = session_id is not None
        if session:
            try:
                params["b_family_id"] = uuid.UUID(session_id)
            except ValueError:
                return RequestRead(None, None, False, None, None)  # not a session this server opened
            params["b_now"] = now
        if key is not None:
            params["b_scope"] = key.scope
        windows = len(usage.amounts_since) if usage is not None else None
        row = (
            await self._connection.execute(
                _statement(session, key is not None, windows, float_code is not None), params
            )
        ).first()
        if row is None:
            return RequestRead(None, None, True, None, None)
        user = user_from_row(row, (), self._cipher)
        token = (
            self._cipher.decrypt(row.token_enc, aad=aad("deriv_accounts.token_enc", user.id))
            if row.token_enc is not None
            else None
        )
        stored = None
        if row.record_id is not None:
            found = (await self._connection.execute(_RECORD, {"b_id": row.record_id})).one()
            stored = StoredRequest(
                fingerprint=found.request_fingerprint,
                completed=found.status == "COMPLETED",
                response_code=found.response_code,
                response_body=found.response_body,
                expires_at=found.expires_at,
            )
        under_key = TransactionId(row.under_key) if row.under_key is not None else None
        counted = None
        if windows is not None:
            counted = Usage(
                int(row.started or 0), tuple(int(row._mapping[f"moved_{i}"] or 0) for i in range(windows))
            )
        balance = int(row.float_balance) if row.float_balance is not None else None
        return RequestRead(user, token, bool(row.session_open), stored, under_key, counted, balance)

    async def _insert(self, key: RequestKey, *, now: datetime, replace: bool, **values: object) -> None:
        """The record under `key`, after the expired one it replaces (judged so by the read)."""
        if replace:
            await self._connection.execute(
                _DROP_EXPIRED, {"b_scope": key.scope, "b_key_hash": key.key_hash, "b_now": now}
            )
        await self._connection.execute(
            _INSERT,
            {
                "id": new_uuid7(),
                "scope": key.scope,
                "key_hash": key.key_hash,
                "request_fingerprint": key.fingerprint,
                "created_at": now,
                **values,
            },
        )

    async def claim(self, key: RequestKey, *, now: datetime, replace: bool) -> None:
        try:
            await self._insert(
                key, now=now, replace=replace, status="IN_FLIGHT", expires_at=now + IN_FLIGHT_LEASE
            )
        except IntegrityError:
            # Another request under the key got its record in since this one's read: it runs.
            raise IdempotencyKeyInFlight(
                "a request with this idempotency key is still being processed"
            ) from None

    async def complete(
        self, key: RequestKey, *, transaction_id: TransactionId, body: bytes, now: datetime
    ) -> bool:
        done = await self._connection.execute(
            _COMPLETE,
            {
                "b_scope": key.scope,
                "b_key_hash": key.key_hash,
                "b_fingerprint": key.fingerprint,
                "b_body": body,
                "b_transaction_id": transaction_id.value,
                "b_expires_at": now + RETENTION,
            },
        )
        return bool(done.rowcount)

    async def record_answer(
        self, key: RequestKey, *, transaction_id: TransactionId, body: bytes, now: datetime, replace: bool
    ) -> None:
        await self._insert(
            key,
            now=now,
            replace=replace,
            status="COMPLETED",
            response_code=0,
            response_body=body,
            transaction_id=transaction_id.value,
            expires_at=now + RETENTION,
        )

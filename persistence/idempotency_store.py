"""Request-level idempotency records (`idempotency_keys`), PEC 10.

Two ways a record is written (penpay_api/idempotency.py says which money call uses which):

- With the effect (InitiateDeposit): the use case's one read finds the record under the key
  (persistence/payment_requests.py), and a new request's answer is inserted COMPLETED in the same
  database transaction as its Transaction. The effect and "this key is done, here is its response"
  commit together or not at all; nothing is claimed first.
- Claimed, then completed (the other money calls, whose answer comes after an external call):
  1. claim(): a short transaction of its own inserts the key as IN_FLIGHT with a lease; the unique
     (scope, key_hash) decides between racing requests, and a concurrent repeat is told "still in
     flight" instead of waiting.
  2. complete(): the API stores the response in a second short transaction of its own, after the
     operation's own transaction has committed. A crash in between leaves the claim, whose lease
     runs out; the retry takes it over, and the operation's own uniqueness
     (transactions.idempotency_key_hash) returns the Transaction already made, never a second one.
transaction_exists_under_key() reads that uniqueness: whether a refused call had created its
Transaction before it was refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.shared.clock import Clock
from domain.shared.ids import new_uuid7
from persistence.tables import idempotency_keys, transactions

RETENTION = timedelta(hours=24)
IN_FLIGHT_LEASE = timedelta(seconds=60)

_INSERT = insert(idempotency_keys)
_SELECT = select(idempotency_keys).where(
    idempotency_keys.c.scope == bindparam("scope"), idempotency_keys.c.key_hash == bindparam("key_hash")
)
# Take over a key whose holder's lease ran out, or whose retention expired.
_TAKE_OVER = (
    update(idempotency_keys)
    .where(
        idempotency_keys.c.scope == bindparam("b_scope"),
        idempotency_keys.c.key_hash == bindparam("b_key_hash"),
        idempotency_keys.c.status == bindparam("expected_status"),
        idempotency_keys.c.expires_at == bindparam("expected_expires_at"),
    )
    .values(
        request_fingerprint=bindparam("fingerprint"),
        status="IN_FLIGHT",
        response_code=None,
        response_body=None,
        created_at=bindparam("now"),
        expires_at=bindparam("lease_until"),
    )
)
_COMPLETE = (
    update(idempotency_keys)
    .where(
        idempotency_keys.c.scope == bindparam("b_scope"),
        idempotency_keys.c.key_hash == bindparam("b_key_hash"),
        idempotency_keys.c.status == "IN_FLIGHT",
    )
    .values(
        status="COMPLETED",
        response_code=bindparam("response_code"),
        response_body=bindparam("response_body"),
        transaction_id=bindparam("transaction_id"),
        expires_at=bindparam("expires_at"),
    )
)
_TRANSACTION_UNDER_KEY = (
    select(transactions.c.id).where(transactions.c.idempotency_key_hash == bindparam("key_hash")).limit(1)
)


class ClaimOutcome(StrEnum):
    CLAIMED = "CLAIMED"  # go ahead: this request owns the key
    REPLAY = "REPLAY"  # done before with the same request: answer with the stored response
    IN_FLIGHT = "IN_FLIGHT"  # the first request is still running
    MISMATCH = "MISMATCH"  # the key was used for a different request


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    response_code: int | None = None
    response_body: bytes | None = None


class SqlIdempotencyStore:
    """claim() runs in its own transaction on the engine; complete() in the connection it is given
    (the API's own short transaction)."""

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def claim(self, *, scope: str, key_hash: str, fingerprint: str) -> Claim:
        now = self._clock.now()
        params = {"scope": scope, "key_hash": key_hash}
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    _INSERT,
                    {
                        "id": new_uuid7(),
                        **params,
                        "request_fingerprint": fingerprint,
                        "status": "IN_FLIGHT",
                        "created_at": now,
                        "expires_at": now + IN_FLIGHT_LEASE,
                    },
                )
            return Claim(ClaimOutcome.CLAIMED)
        except IntegrityError:
            pass
        async with self._engine.begin() as connection:
            row = (await connection.execute(_SELECT.with_for_update(), params)).one()
            return await self._decide(connection, row, fingerprint, now)

    async def _decide(
        self, connection: AsyncConnection, row: Row[Any], fingerprint: str, now: datetime
    ) -> Claim:
        expired = row.expires_at <= now
        if expired:
            taken = await connection.execute(
                _TAKE_OVER,
                {
                    "b_scope": row.scope,
                    "b_key_hash": row.key_hash,
                    "expected_status": row.status,
                    "expected_expires_at": row.expires_at,
                    "fingerprint": fingerprint,
                    "now": now,
                    "lease_until": now + IN_FLIGHT_LEASE,
                },
            )
            if taken.rowcount == 1:
                return Claim(ClaimOutcome.CLAIMED)
        if row.request_fingerprint != fingerprint:
            return Claim(ClaimOutcome.MISMATCH)
        if row.status == "COMPLETED":
            return Claim(ClaimOutcome.REPLAY, row.response_code, row.response_body)
        return Claim(ClaimOutcome.IN_FLIGHT)


async def complete(
    connection: AsyncConnection,
    *,
    scope: str,
    key_hash: str,
    response_code: int,
    response_body: bytes,
    now: datetime,
    transaction_id: Any = None,
) -> None:
    """Mark a claimed key done with its response, in the transaction of the connection given."""
    result = await connection.execute(
        _COMPLETE,
        {
            "b_scope": scope,
            "b_key_hash": key_hash,
            "response_code": response_code,
            "response_body": response_body,
            "transaction_id": transaction_id,
            "expires_at": now + RETENTION,
        },
    )
    if result.rowcount != 1:
        raise LookupError("idempotency key was not claimed, or was completed already")


async def store_answer(
    connection: AsyncConnection,
    *,
    scope: str,
    key_hash: str,
    fingerprint: str,
    response_code: int,
    response_body: bytes,
    now: datetime,
    transaction_id: Any = None,
) -> None:
    """Store an answer under a key nothing claimed (a use case that claims with its intent answered
    before claiming: a repeat of a finished request, a refusal): inserted COMPLETED; LookupError
    when a record is under the key already (another request's, which stores its own answer)."""
    try:
        await connection.execute(
            _INSERT,
            {
                "id": new_uuid7(),
                "scope": scope,
                "key_hash": key_hash,
                "request_fingerprint": fingerprint,
                "status": "COMPLETED",
                "response_code": response_code,
                "response_body": response_body,
                "transaction_id": transaction_id,
                "created_at": now,
                "expires_at": now + RETENTION,
            },
        )
    except IntegrityError:
        raise LookupError("a record is under the idempotency key already") from None


async def transaction_exists_under_key(engine: AsyncEngine, key_hash: str) -> bool:
    """Whether a Transaction was stored under this key hash (one read of its unique index)."""
    async with engine.connect() as connection:
        found = await connection.execute(_TRANSACTION_UNDER_KEY, {"key_hash": key_hash})
        return found.first() is not None

"""Give back an idempotency claim whose request failed in a way worth retrying.

SqlIdempotencyStore.claim() marks a key IN_FLIGHT for a 60 s lease; complete() stores the
response. When the operation ends in a retryable failure (the Deriv gateway unavailable, a rate
limit, a lost optimistic-lock race, an internal error), the API stores nothing and deletes the
claim, so the client's retry with the same key runs again at once instead of being told
"in flight" until the lease runs out. A retry is safe even if the failed attempt did commit
its effect: transactions.idempotency_key_hash is unique, so it returns the same transaction.
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.tables import idempotency_keys

_t = idempotency_keys
_RELEASE = delete(_t).where(
    _t.c.scope == bindparam("b_scope"),
    _t.c.key_hash == bindparam("b_key_hash"),
    _t.c.request_fingerprint == bindparam("b_fingerprint"),
    _t.c.status == "IN_FLIGHT",
)


async def release_claim(engine: AsyncEngine, *, scope: str, key_hash: str, fingerprint: str) -> bool:
    """Delete our IN_FLIGHT claim (never a completed record); True if there was one."""
    async with engine.begin() as connection:
        result = await connection.execute(
            _RELEASE, {"b_scope": scope, "b_key_hash": key_hash, "b_fingerprint": fingerprint}
        )
    return bool(result.rowcount)

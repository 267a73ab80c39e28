"""Is the session an access token names still open?

A user's access token carries its session id (`sid`): the refresh-token family its login
opened. Logout, device removal and refresh-token reuse revoke that family; checking it on every
authenticated call makes them end the session at once instead of when the access token expires
(~15 min later). The session is open while its family holds a token that is neither revoked nor
expired. Cost: one read on the indexed family_id per authenticated call, which is also what a
jti revocation list would cost, and this one needs no second list to keep in step.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.engine import connect
from persistence.tables import refresh_tokens

_rt = refresh_tokens
_OPEN_TOKEN = (
    select(_rt.c.id)
    .where(
        _rt.c.family_id == bindparam("b_family_id"),
        _rt.c.revoked_at.is_(None),
        _rt.c.expires_at > bindparam("b_now"),
    )
    .limit(1)
)


class SessionCheck(Protocol):
    async def is_open(self, session_id: str, *, now: datetime) -> bool: ...


class SqlSessionCheck:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def is_open(self, session_id: str, *, now: datetime) -> bool:
        try:
            family_id = uuid.UUID(session_id)
        except ValueError:
            return False  # not a session this server opened
        async with connect(self._engine) as connection:
            found = await connection.execute(_OPEN_TOKEN, {"b_family_id": family_id, "b_now": now})
            return found.first() is not None

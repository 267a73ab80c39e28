"""Refresh tokens and verification codes, each operation in a database transaction of its own.

Refresh tokens: opaque (256 random bits, URL-safe), only SHA-256 stored; rotated on every use.
rotate() locks the presented token's row (FOR UPDATE; SQLite: BEGIN IMMEDIATE), so two racing
uses of one token cannot both succeed: the second finds it used and revokes the family.

Verification codes: 6 digits, stored as HMAC-SHA256 under a key derived from the PII key (a
plain hash of a 6-digit code is reversed by trying the 10^6 candidates); expire after 10 minutes;
5 attempts per code, after which the code is dead and a new one must be requested (that request
is itself rate-limited per phone and IP).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import bindparam, distinct, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from application.identity.errors import (
    InvalidRefreshToken,
    RefreshTokenReused,
    VerificationAttemptsExhausted,
    VerificationCodeInvalid,
)
from application.identity.ports import IssuedRefreshToken, RotatedRefreshToken, VerificationPurpose
from domain.shared.ids import UserId, new_uuid7
from persistence.tables import refresh_tokens, verification_codes
from security.pii import PiiCipher, default_cipher

REFRESH_TTL = timedelta(days=30)
CODE_TTL = timedelta(minutes=10)
MAX_CODE_ATTEMPTS = 5

_rt = refresh_tokens
_INSERT_REFRESH = insert(_rt)
_REFRESH_BY_HASH = select(_rt).where(_rt.c.token_hash == bindparam("token_hash")).with_for_update()
_MARK_USED = update(_rt).where(_rt.c.id == bindparam("b_id")).values(used_at=bindparam("at"))
_REVOKE_FAMILY = (
    update(_rt)
    .where(_rt.c.family_id == bindparam("b_family_id"), _rt.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("at"))
)
_REVOKE_DEVICE = (
    update(_rt)
    .where(
        _rt.c.user_id == bindparam("b_user_id"),
        _rt.c.device_id == bindparam("b_device_id"),
        _rt.c.revoked_at.is_(None),
    )
    .values(revoked_at=bindparam("at"))
)
# Open sessions: families holding a token neither used, revoked nor expired.
_OPEN_FAMILIES = select(func.count(distinct(_rt.c.family_id))).where(
    _rt.c.user_id == bindparam("b_user_id"),
    _rt.c.revoked_at.is_(None),
    _rt.c.used_at.is_(None),
    _rt.c.expires_at > bindparam("at"),
)
_REVOKE_USER = (
    update(_rt)
    .where(_rt.c.user_id == bindparam("b_user_id"), _rt.c.revoked_at.is_(None))
    .values(revoked_at=bindparam("at"))
)

_vc = verification_codes
_INSERT_CODE = insert(_vc)
# Superseding goes through the primary key of the codes a plain read found: an UPDATE over the
# (user_id, purpose) range would take InnoDB gap locks, and two new users (UUIDv7 ids: the same gap
# at the end of the index) asking for a code at once would deadlock on their INSERTs.
_UNCONSUMED_CODES = select(_vc.c.id).where(
    _vc.c.user_id == bindparam("b_user_id"),
    _vc.c.purpose == bindparam("b_purpose"),
    _vc.c.consumed_at.is_(None),
)
_SUPERSEDE_CODES = (
    update(_vc)
    .where(_vc.c.id.in_(bindparam("ids", expanding=True)), _vc.c.consumed_at.is_(None))
    .values(consumed_at=bindparam("at"))
)
_LATEST_CODE = (
    select(_vc)
    .where(
        _vc.c.user_id == bindparam("b_user_id"),
        _vc.c.purpose == bindparam("b_purpose"),
        _vc.c.consumed_at.is_(None),
    )
    .order_by(_vc.c.created_at.desc(), _vc.c.id.desc())
    .limit(1)
    .with_for_update()
)
_COUNT_ATTEMPT = update(_vc).where(_vc.c.id == bindparam("b_id")).values(attempts=_vc.c.attempts + 1)
_CONSUME = update(_vc).where(_vc.c.id == bindparam("b_id")).values(consumed_at=bindparam("at"))


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SqlRefreshTokenStore:
    """Implements application.identity.ports.RefreshTokenStore."""

    def __init__(self, engine: AsyncEngine, *, ttl: timedelta = REFRESH_TTL) -> None:
        self._engine = engine
        self.ttl = ttl

    async def issue(
        self, *, user_id: UserId, device_id: str, now: datetime, family_id: str | None = None
    ) -> IssuedRefreshToken:
        async with self._engine.begin() as connection:
            return await self._insert(
                connection, user_id.value, device_id, family_id or str(new_uuid7()), now
            )

    async def _insert(
        self, connection: AsyncConnection, user_id: uuid.UUID, device_id: str, family_id: str, now: datetime
    ) -> IssuedRefreshToken:
        token = secrets.token_urlsafe(32)
        expires = now + self.ttl
        await connection.execute(
            _INSERT_REFRESH,
            {
                "id": new_uuid7(),
                "user_id": user_id,
                "family_id": uuid.UUID(family_id),
                "device_id": device_id,
                "token_hash": hash_refresh_token(token),
                "issued_at": now,
                "expires_at": expires,
                "used_at": None,
                "revoked_at": None,
            },
        )
        return IssuedRefreshToken(token=token, family_id=family_id, expires_at=expires)

    async def rotate(self, token: str, *, now: datetime) -> RotatedRefreshToken:
        reused = False
        async with self._engine.begin() as connection:
            row = (
                await connection.execute(_REFRESH_BY_HASH, {"token_hash": hash_refresh_token(token)})
            ).first()
            if row is None:
                raise InvalidRefreshToken("unknown refresh token")
            if row.revoked_at is not None:
                raise InvalidRefreshToken("this session has ended; sign in again")
            if row.used_at is not None:
                # Someone holds an old token: the legitimate client or a thief. End the session.
                await connection.execute(_REVOKE_FAMILY, {"b_family_id": row.family_id, "at": now})
                reused = True
            elif row.expires_at <= now:
                raise InvalidRefreshToken("refresh token expired; sign in again")
            else:
                await connection.execute(_MARK_USED, {"b_id": row.id, "at": now})
                issued = await self._insert(connection, row.user_id, row.device_id, str(row.family_id), now)
        if reused:  # raised after the commit, so the revocation stays
            raise RefreshTokenReused("refresh token used twice: this session has been ended; sign in again")
        return RotatedRefreshToken(user_id=UserId(row.user_id), device_id=row.device_id, issued=issued)

    async def revoke_family_of(self, token: str, *, now: datetime) -> bool:
        async with self._engine.begin() as connection:
            row = (
                await connection.execute(_REFRESH_BY_HASH, {"token_hash": hash_refresh_token(token)})
            ).first()
            if row is None:
                return False
            await connection.execute(_REVOKE_FAMILY, {"b_family_id": row.family_id, "at": now})
            return True

    async def revoke_device(self, user_id: UserId, device_id: str, *, now: datetime) -> int:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                _REVOKE_DEVICE, {"b_user_id": user_id.value, "b_device_id": device_id, "at": now}
            )
            return int(result.rowcount)

    async def revoke_user(self, user_id: UserId, *, now: datetime) -> int:
        """Every token of the user, so every session (family) is closed: SqlSessionCheck then
        refuses their access tokens at once."""
        values = {"b_user_id": user_id.value, "at": now}
        async with self._engine.begin() as connection:
            sessions = int((await connection.execute(_OPEN_FAMILIES, values)).scalar_one())
            await connection.execute(_REVOKE_USER, values)
            return sessions


class SqlVerificationCodeStore:
    """Implements application.identity.ports.VerificationCodeStore."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        cipher: PiiCipher | None = None,
        ttl: timedelta = CODE_TTL,
        max_attempts: int = MAX_CODE_ATTEMPTS,
    ) -> None:
        self._engine = engine
        self._key = (cipher or default_cipher()).derive_key("penpay verification codes v1")
        self.ttl = ttl
        self.max_attempts = max_attempts

    def _hash(self, user_id: UserId, purpose: VerificationPurpose, code: str) -> str:
        message = f"{user_id}|{purpose.value}|{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    async def create(
        self, *, user_id: UserId, purpose: VerificationPurpose, code: str, now: datetime
    ) -> None:
        async with self._engine.begin() as connection:
            # A code made concurrently for the same user may stay unconsumed: consume() only ever
            # checks the latest one, so it can never be used.
            older = (
                (
                    await connection.execute(
                        _UNCONSUMED_CODES, {"b_user_id": user_id.value, "b_purpose": purpose.value}
                    )
                )
                .scalars()
                .all()
            )
            if older:
                await connection.execute(_SUPERSEDE_CODES, {"ids": list(older), "at": now})
            await connection.execute(
                _INSERT_CODE,
                {
                    "id": new_uuid7(),
                    "user_id": user_id.value,
                    "purpose": purpose.value,
                    "code_hash": self._hash(user_id, purpose, code),
                    "attempts": 0,
                    "created_at": now,
                    "expires_at": now + self.ttl,
                    "consumed_at": None,
                },
            )

    async def consume(
        self, *, user_id: UserId, purpose: VerificationPurpose, code: str, now: datetime
    ) -> None:
        failure: Exception | None = None
        async with self._engine.begin() as connection:
            row = (
                await connection.execute(
                    _LATEST_CODE, {"b_user_id": user_id.value, "b_purpose": purpose.value}
                )
            ).first()
            if row is None or row.expires_at <= now:
                raise VerificationCodeInvalid("no valid code: request a new one")
            if row.attempts >= self.max_attempts:
                raise VerificationAttemptsExhausted("too many wrong codes: request a new one")
            if hmac.compare_digest(row.code_hash, self._hash(user_id, purpose, code)):
                await connection.execute(_CONSUME, {"b_id": row.id, "at": now})
                return
            await connection.execute(_COUNT_ATTEMPT, {"b_id": row.id})
            left = self.max_attempts - row.attempts - 1
            failure = (
                VerificationCodeInvalid(f"wrong code; {left} attempts left", attempts_left=left)
                if left > 0
                else VerificationAttemptsExhausted("too many wrong codes: request a new one")
            )
        raise failure  # after the commit, so the counted attempt stays

"""Ports the identity use cases need; adapters live in security/ and persistence/."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple, Protocol

from application.unit_of_work import UnitOfWork
from domain.shared.ids import UserId
from domain.user.ports import UserRepository
from domain.user.user import User


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...

    async def verify(self, password_hash: str, password: str) -> bool: ...

    async def burn(self, password: str) -> None:
        """Spend a verification's cost (unknown account: same timing as a known one)."""
        ...

    def needs_rehash(self, password_hash: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    device_id: str
    session_id: str
    expires_at: int  # epoch seconds


class AccessTokenIssuer(Protocol):
    def issue(
        self, *, user_id: str, device_id: str, session_id: str, now: datetime
    ) -> tuple[str, datetime]: ...

    def verify(self, token: str, *, now: datetime) -> AccessClaims: ...


@dataclass(frozen=True, slots=True, repr=False)
class IssuedRefreshToken:
    token: str  # shown to the client once; only its SHA-256 is stored
    family_id: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"IssuedRefreshToken(family_id={self.family_id!r}, token='***')"


@dataclass(frozen=True, slots=True, repr=False)
class RotatedRefreshToken:
    user_id: UserId
    device_id: str
    issued: IssuedRefreshToken


class RefreshTokenStore(Protocol):
    async def issue(
        self, *, user_id: UserId, device_id: str, now: datetime, family_id: str | None = None
    ) -> IssuedRefreshToken: ...

    async def rotate(self, token: str, *, now: datetime) -> RotatedRefreshToken:
        """Use a token once: it is marked used and a new one of the same family returned.
        A used or revoked token revokes its whole family (InvalidRefreshToken/RefreshTokenReused)."""
        ...

    async def revoke_family_of(self, token: str, *, now: datetime) -> bool: ...

    async def revoke_device(self, user_id: UserId, device_id: str, *, now: datetime) -> int: ...

    async def revoke_user(self, user_id: UserId, *, now: datetime) -> int:
        """End every session of the user (a password reset or change); how many were open."""
        ...


class VerificationPurpose(StrEnum):
    PHONE = "phone"
    EMAIL = "email"
    PASSWORD_RESET = "password_reset"


class VerificationCodeStore(Protocol):
    async def create(
        self, *, user_id: UserId, purpose: VerificationPurpose, code: str, now: datetime
    ) -> None:
        """Store a new code (hashed), superseding earlier unused codes of the same purpose."""
        ...

    async def consume(
        self, *, user_id: UserId, purpose: VerificationPurpose, code: str, now: datetime
    ) -> None:
        """Accept the code once, or count a failed attempt and raise (attempt-limited)."""
        ...


class Notifier(Protocol):
    async def send_email(self, *, to: str, subject: str, body: str) -> None: ...

    async def send_sms(self, *, to: str, body: str) -> None: ...


class DerivAuthorization(NamedTuple):
    loginid: str
    currency: str
    scopes: tuple[str, ...]
    is_virtual: bool
    fullname: str
    email: str


class DerivRestAccount(NamedTuple):
    """What Deriv's new API says of a user's token: the account's nickname and main wallet currency."""

    nickname: str
    currency: str


class DerivAccountGateway(Protocol):
    """Deriv calls made with the user's own OAuth token (the gateway's gRPC Authorize/GetSettings)."""

    async def authorize(self, token: str) -> DerivAuthorization: ...

    async def get_settings(self, token: str) -> Mapping[str, object]: ...

    async def authorize_rest(self, token: str) -> DerivRestAccount:
        """The new-API account of an OAuth access token; DerivRebindRequired when Deriv refuses it."""
        ...


@dataclass(frozen=True, slots=True, repr=False)
class DerivOAuthTokens:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    scopes: tuple[str, ...]

    def __repr__(self) -> str:
        return f"DerivOAuthTokens(scopes={self.scopes!r}, expires_at={self.expires_at!r}, tokens='***')"


class DerivOAuth(Protocol):
    """Deriv's OAuth2 authorization code + PKCE (new API): the URL, the exchange, the refresh."""

    def authorize_url(self, *, state: str, challenge: str, scopes: tuple[str, ...]) -> str: ...

    async def exchange(self, *, code: str, verifier: str) -> DerivOAuthTokens:
        """DerivRebindRequired when Deriv refuses the code (used, expired, wrong verifier)."""
        ...

    async def refresh(self, refresh_token: str) -> DerivOAuthTokens:
        """Coalesced per refresh token; DerivRebindRequired when Deriv refuses it."""
        ...


@dataclass(frozen=True, slots=True, repr=False)
class DerivCredentials:
    """A user's Deriv token as stored (decrypted): v3 API token, or REST OAuth access token."""

    token: str
    scopes: tuple[str, ...]
    refresh_token: str | None = None
    expires_at: datetime | None = None

    def __repr__(self) -> str:
        return f"DerivCredentials(scopes={self.scopes!r}, expires_at={self.expires_at!r}, tokens='***')"


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int, window_seconds: int) -> None:
        """Count one call under `key`; raise RateLimited (with retry-after) past `limit` per window."""
        ...

    async def hit_all(self, hits: Sequence[tuple[str, int, int]]) -> None:
        """Count one call in every window of `hits` (key, limit, window in seconds) at once, or,
        past a limit, in none: RateLimited with the first full window's retry-after."""
        ...


class TransactionStats(Protocol):
    """Read-only figures from the `transactions` table for the AML limits."""

    async def amount_since(self, user_id: UserId, currency: str, since: datetime) -> int: ...

    async def count_since(self, user_id: UserId, since: datetime) -> int: ...

    async def usage(
        self, user_id: UserId, currency: str, *, count_since: datetime, amounts_since: Sequence[datetime]
    ) -> Usage:
        """count_since and amount_since for each of `amounts_since`, in one read."""
        ...


@dataclass(frozen=True, slots=True)
class KnownUser:
    """A user and their Deriv token as read earlier in the same request, handed on so the
    compliance check and the KYC refresh do not read them again; `usage`, when the caller read the
    limits' figures in that read too (CompliancePolicy.usage_query), so the policy does not either."""

    user: User
    deriv_token: str | None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which figures the AML limits need for a payment (TransactionStats.usage's arguments)."""

    currency: str
    count_since: datetime
    amounts_since: tuple[datetime, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    started: int  # transactions started since count_since (every status: velocity)
    amounts: tuple[int, ...]  # minor units of the currency moved since each of amounts_since


class IdentityUserRepository(UserRepository, Protocol):
    async def store_deriv_credentials(
        self,
        user_id: UserId,
        *,
        token: str,
        scopes: tuple[str, ...],
        refresh_token: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        """Keep the user's Deriv token(s) (encrypted) beside the bound account."""
        ...

    async def load_deriv_token(self, user_id: UserId) -> str | None: ...

    async def load_deriv_credentials(self, user_id: UserId) -> DerivCredentials | None: ...


class IdentityUnitOfWork(UnitOfWork, Protocol):
    """The unit of work of the identity use cases: the one port, with the users' repository."""

    @property
    def users(self) -> IdentityUserRepository: ...

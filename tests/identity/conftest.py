"""Fixtures for the identity tests: real MariaDB/SQLite, real Redis, the Deriv simulator in-process."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from application.identity.rate_limits import RateLimitGuard
from application.identity.service import IdentityService
from deriv_gateway.simulator import DerivSimulator, RateLimitConfig, SimulatorConfig
from domain.shared.clock import FixedClock
from persistence.auth_store import SqlRefreshTokenStore, SqlVerificationCodeStore
from persistence.engine import create_engine
from persistence.unit_of_work import SqlUnitOfWork
from security.access_tokens import RsaAccessTokens, SigningKey
from security.notify import DevelopmentNotifier
from security.passwords import FAST_FOR_TESTS, Argon2idHasher
from security.rate_limit import InProcessRateLimiter

from .deriv_ws import DerivWebSocketAccounts

PASSWORD = "correct horse battery 9"
# One RSA key for the whole session: generating one costs ~50 ms.
_SIGNING_KEY = SigningKey.generate("test-k1")


def unique_email() -> str:
    return f"user{secrets.token_hex(5)}@example.co.ke"


def unique_phone() -> str:
    return f"+2547{secrets.randbelow(10**8):08d}"


@pytest.fixture
async def engine(mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(mariadb_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture(params=["mariadb", "sqlite"])
def any_url(request: pytest.FixtureRequest) -> str:
    """MariaDB (the session database) and a SQLite file of this test's own."""
    return str(request.getfixturevalue("mariadb_url" if request.param == "mariadb" else "sqlite_url"))


@pytest.fixture
async def any_engine(any_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(any_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock() -> FixedClock:
    # A fixed instant, not the wall clock: tokens, codes and windows are all as of this clock.
    # In the past, since PyJWT refuses a token whose `iat` is ahead of the wall clock.
    return FixedClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
async def deriv_sim() -> AsyncIterator[DerivSimulator]:
    sim = DerivSimulator(
        SimulatorConfig(port=0, control_port=None, seed=1, rate_limits=RateLimitConfig(enabled=False))
    )
    await sim.start()
    yield sim
    await sim.stop()


@dataclass
class Identity:
    service: IdentityService
    uow: Callable[[], SqlUnitOfWork]
    engine: AsyncEngine
    notifier: DevelopmentNotifier
    access: RsaAccessTokens
    refresh_store: SqlRefreshTokenStore
    codes: SqlVerificationCodeStore
    hasher: Argon2idHasher
    clock: FixedClock
    limiter: InProcessRateLimiter | object


def build_identity(
    engine: AsyncEngine,
    clock: FixedClock,
    deriv_url: str,
    *,
    limiter: object | None = None,
    hasher: Argon2idHasher | None = None,
) -> Identity:
    hasher = hasher or Argon2idHasher(FAST_FOR_TESTS)
    access = RsaAccessTokens([_SIGNING_KEY])
    refresh_store = SqlRefreshTokenStore(engine)
    codes = SqlVerificationCodeStore(engine)
    notifier = DevelopmentNotifier()
    limiter = limiter or InProcessRateLimiter()

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, clock=clock)

    service = IdentityService(
        unit_of_work=uow,
        hasher=hasher,
        access_tokens=access,
        refresh_tokens=refresh_store,
        codes=codes,
        notifier=notifier,
        deriv=DerivWebSocketAccounts(deriv_url),
        rate_limits=RateLimitGuard(limiter),  # type: ignore[arg-type]
        clock=clock,
    )
    return Identity(service, uow, engine, notifier, access, refresh_store, codes, hasher, clock, limiter)


@pytest.fixture
async def identity(
    engine: AsyncEngine, clock: FixedClock, deriv_sim: DerivSimulator
) -> AsyncIterator[Identity]:
    built = build_identity(engine, clock, deriv_sim.url())
    yield built
    built.hasher.close()


@pytest.fixture
async def any_identity(
    any_engine: AsyncEngine, clock: FixedClock, deriv_sim: DerivSimulator
) -> AsyncIterator[Identity]:
    built = build_identity(any_engine, clock, deriv_sim.url())
    yield built
    built.hasher.close()


@pytest.fixture
def fresh_url(fresh_mariadb_url: str) -> str:
    return fresh_mariadb_url


@pytest.fixture
async def fresh_identity(
    fresh_url: str, clock: FixedClock, deriv_sim: DerivSimulator
) -> AsyncIterator[Identity]:
    """On a MariaDB database of this test's own (Deriv accounts can be bound afresh)."""
    engine = create_engine(fresh_url, pool_size=5)
    built = build_identity(engine, clock, deriv_sim.url())
    yield built
    built.hasher.close()
    await engine.dispose()

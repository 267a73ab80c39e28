"""Register, log in with devices (max 2), refresh token rotation and reuse detection, logout."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from application.identity.errors import (
    AlreadyRegistered,
    InvalidCredentials,
    InvalidRefreshToken,
    RefreshTokenReused,
    WeakPassword,
)
from domain.shared.ids import UserId
from domain.user.errors import DeviceLimitReached
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency
from persistence.auth_store import hash_refresh_token
from persistence.tables import ledger_accounts, refresh_tokens, users
from security.passwords import Argon2idHasher, Argon2Parameters

from .conftest import PASSWORD, Identity, unique_email, unique_phone

pytestmark = pytest.mark.integration


async def register(identity: Identity) -> tuple[str, str]:
    email, phone = unique_email(), unique_phone()
    await identity.service.register(email=email, phone=phone, password=PASSWORD, client_ip="10.0.0.1")
    return email, phone


async def test_registration_opens_the_user_s_wallets_with_the_user(any_identity: Identity) -> None:
    email, _ = await register(any_identity)
    async with any_identity.engine.connect() as connection:
        user_id = (await connection.execute(select(users.c.id).where(users.c.email == email))).scalar_one()
        wallets = (
            await connection.execute(
                select(ledger_accounts.c.kind, ledger_accounts.c.currency, ledger_accounts.c.balance_cents)
                .where(ledger_accounts.c.user_id == user_id)
                .order_by(ledger_accounts.c.currency)
            )
        ).all()
    assert [tuple(w) for w in wallets] == [("USER_WALLET", "KES", 0), ("USER_WALLET", "USD", 0)]
    # a first deposit finds them: nothing to create on the money path
    async with any_identity.uow() as uow:
        found = await uow.ledger.get_or_create_account(
            kind=AccountKind.USER_WALLET, currency=Currency.USD, user_id=UserId(user_id)
        )
        await uow.commit()
    assert found.balance_minor == 0
    async with any_identity.engine.connect() as connection:
        count = (
            await connection.execute(
                select(func.count()).select_from(ledger_accounts).where(ledger_accounts.c.user_id == user_id)
            )
        ).scalar_one()
    assert count == 2


async def test_register_then_login_by_email_or_phone(any_identity: Identity) -> None:
    email, phone = await register(any_identity)
    session = await any_identity.service.login(
        login=email, password=PASSWORD, device_id="device-one-1", device_name="Pixel"
    )
    claims = any_identity.service.authenticate(session.access_token)
    assert claims.user_id == str(session.user_id) and claims.device_id == "device-one-1"
    again = await any_identity.service.login(
        login=phone, password=PASSWORD, device_id="device-one-1", device_name="Pixel"
    )
    assert again.user_id == session.user_id
    async with any_identity.engine.connect() as connection:
        stored = (
            await connection.execute(select(users.c.password_hash).where(users.c.email == email))
        ).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored

    with pytest.raises(InvalidCredentials):
        await any_identity.service.login(
            login=email, password=PASSWORD + "x", device_id="device-one-1", device_name="P"
        )
    with pytest.raises(InvalidCredentials):
        await any_identity.service.login(
            login=unique_email(), password=PASSWORD, device_id="device-one-1", device_name="P"
        )
    with pytest.raises(AlreadyRegistered):
        await any_identity.service.register(email=email, phone=unique_phone(), password=PASSWORD)
    with pytest.raises(WeakPassword):
        await any_identity.service.register(email=unique_email(), phone=unique_phone(), password="short")


async def test_a_third_device_is_refused_until_one_is_removed(identity: Identity) -> None:
    email, _ = await register(identity)
    first = await identity.service.login(
        login=email, password=PASSWORD, device_id="device-aaaa-1", device_name="A"
    )
    await identity.service.login(login=email, password=PASSWORD, device_id="device-bbbb-2", device_name="B")
    with pytest.raises(DeviceLimitReached, match="remove one of them"):
        await identity.service.login(
            login=email, password=PASSWORD, device_id="device-cccc-3", device_name="C"
        )
    # both devices are still there: nothing was evicted
    await identity.service.login(login=email, password=PASSWORD, device_id="device-aaaa-1", device_name="A")

    await identity.service.remove_device(user_id=first.user_id, device_id="device-aaaa-1")
    # the removed device's session is gone
    with pytest.raises(InvalidRefreshToken):
        await identity.service.refresh(refresh_token=first.refresh_token)
    third = await identity.service.login(
        login=email, password=PASSWORD, device_id="device-cccc-3", device_name="C"
    )
    assert third.device_id == "device-cccc-3"


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(identity: Identity) -> None:
    email, _ = await register(identity)
    session = await identity.service.login(
        login=email, password=PASSWORD, device_id="device-aaaa-1", device_name="A"
    )
    second = await identity.service.refresh(refresh_token=session.refresh_token)
    assert second.refresh_token != session.refresh_token
    third = await identity.service.refresh(refresh_token=second.refresh_token)
    assert (
        identity.service.authenticate(third.access_token).session_id
        == identity.service.authenticate(session.access_token).session_id
    )

    # the stolen old token is replayed: the family (including the newest token) is revoked
    with pytest.raises(RefreshTokenReused):
        await identity.service.refresh(refresh_token=session.refresh_token)
    with pytest.raises(InvalidRefreshToken):
        await identity.service.refresh(refresh_token=third.refresh_token)

    async with identity.engine.connect() as connection:
        rows = (
            await connection.execute(
                select(refresh_tokens).where(refresh_tokens.c.user_id == session.user_id.value)
            )
        ).all()
    assert len(rows) == 3 and all(r.revoked_at is not None for r in rows)
    assert {r.token_hash for r in rows} >= {hash_refresh_token(session.refresh_token)}
    assert all(session.refresh_token not in repr(tuple(r)) for r in rows)  # only hashes are stored


async def test_two_racing_refreshes_with_one_token_cannot_both_win(identity: Identity) -> None:
    email, _ = await register(identity)
    session = await identity.service.login(
        login=email, password=PASSWORD, device_id="device-aaaa-1", device_name="A"
    )
    results = await asyncio.gather(
        identity.service.refresh(refresh_token=session.refresh_token),
        identity.service.refresh(refresh_token=session.refresh_token),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) <= 1
    assert any(isinstance(r, RefreshTokenReused) for r in results)


async def test_logout_and_expiry_end_the_session(identity: Identity) -> None:
    email, _ = await register(identity)
    session = await identity.service.login(
        login=email, password=PASSWORD, device_id="device-aaaa-1", device_name="A"
    )
    await identity.service.logout(refresh_token=session.refresh_token)
    with pytest.raises(InvalidRefreshToken):
        await identity.service.refresh(refresh_token=session.refresh_token)

    other = await identity.service.login(
        login=email, password=PASSWORD, device_id="device-aaaa-1", device_name="A"
    )
    identity.clock.advance(timedelta(days=31))
    with pytest.raises(InvalidRefreshToken, match="expired"):
        await identity.service.refresh(refresh_token=other.refresh_token)
    with pytest.raises(InvalidRefreshToken):
        await identity.service.refresh(refresh_token="never-issued")


async def test_login_rehashes_a_password_hashed_with_old_parameters(identity: Identity) -> None:
    email, _ = await register(identity)
    async with identity.engine.connect() as connection:
        before = (
            await connection.execute(select(users.c.password_hash).where(users.c.email == email))
        ).scalar_one()
    stronger = Argon2idHasher(Argon2Parameters(time_cost=2, memory_cost_kib=2048, parallelism=1))
    identity.service._hasher = stronger  # the deployment raised its parameters
    try:
        await identity.service.login(
            login=email, password=PASSWORD, device_id="device-aaaa-1", device_name="A"
        )
    finally:
        stronger.close()
    async with identity.engine.connect() as connection:
        after = (
            await connection.execute(select(users.c.password_hash).where(users.c.email == email))
        ).scalar_one()
    assert before.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert after.startswith("$argon2id$v=19$m=2048,t=2,p=1$")

"""The soak's users: each with its own simulated Deriv account (and token) and M-Pesa phone.

Users are written through the product's own repositories (User aggregate, unit of work, the
refresh-token store that opens a session) instead of Register + Login RPCs: that saves one
Argon2id hash per user (~180 ms and 1.5 cores each here) and the login rate limits, and the soak
is about money, not sign-up. The access tokens are signed with the soak's own key, which the
API process is given through PENPAY_JWT_PRIVATE_KEYS, so the API verifies them as its own.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization

from proving.chaos.schedule import USER_DERIV_BALANCE_CENTS, PlannedUser
from security.access_tokens import RsaAccessTokens, SigningKey

DEVICE_ID = "chaos-soak-device"
KID = "chaos"
# Never verified: the soak's users never log in with a password.
UNUSABLE_PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$Y2hhb3NzYWx0$bm90LWEtcmVhbC1wYXNzd29yZC1oYXNo"
SESSION_TTL = timedelta(hours=6)  # the refresh-token family: the session the access tokens name
_CLIENT_SCOPES = ["read", "trade", "trading_information", "payments"]
_REST_SCOPES = ("account_manage", "payment")


class AccessTokens:
    """Access tokens for the soak's users, minted again before they expire (at most 15 min),
    as a client refreshing its session would."""

    def __init__(self, key: SigningKey) -> None:
        self._issuer = RsaAccessTokens([key])
        self._renew_after = self._issuer.ttl * 0.6
        self._cache: dict[str, tuple[str, datetime]] = {}

    def for_user(self, user: SoakUser) -> str:
        now = datetime.now(UTC)
        cached = self._cache.get(user.user_id)
        if cached is not None and now - cached[1] < self._renew_after:
            return cached[0]
        token, _ = self._issuer.issue(
            user_id=user.user_id, device_id=DEVICE_ID, session_id=user.session_id, now=now
        )
        self._cache[user.user_id] = (token, now)
        return token


@dataclass(frozen=True, slots=True)
class SoakUser:
    plan: PlannedUser
    user_id: str
    session_id: str
    deriv_token: str


def write_signing_key(workdir: Path) -> tuple[SigningKey, dict[str, str]]:
    """A fresh RS256 key in the workdir; returns it and the PENPAY_JWT_* settings naming it."""
    key = SigningKey.generate(KID)
    path = workdir / "jwt-signing-key.pem"
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    return key, {"PENPAY_JWT_PRIVATE_KEYS": f"{KID}:{path}"}


def deriv_token_of(plan: PlannedUser, seed: int) -> str:
    if plan.rest:  # a new-API token (a PAT here: it does not expire, so no refresh in the soak)
        return f"chaos-{seed}-rest-{plan.loginid.lower()}"
    return f"chaos-{seed}-{plan.loginid.lower()}"


def rest_nickname_of(plan: PlannedUser) -> str:
    return f"chaos_{plan.loginid.lower()}"


def rest_identities(plans: tuple[PlannedUser, ...], seed: int) -> dict[str, Any]:
    """The REST users' accounts on the REST simulator: a nickname and a token each."""
    rest = [p for p in plans if p.rest]
    return {
        "identities": [{"loginid": p.loginid, "nickname": rest_nickname_of(p)} for p in rest],
        "tokens": [
            {"token": deriv_token_of(p, seed), "loginid": p.loginid, "scopes": list(_REST_SCOPES)}
            for p in rest
        ],
    }


def _settings_of(plan: PlannedUser) -> dict[str, Any]:
    """The user's profile as the simulator's get_settings gives it (KYC complete, residence ke)."""
    return {
        "first_name": "Chaos",
        "last_name": f"User{plan.index}",
        "email": f"{plan.loginid.lower()}@chaos.sim",
        "residence": "ke",
        "phone": f"+{plan.phone}",
        "date_of_birth": 631_152_000,  # epoch seconds, as Deriv keeps it (1990-01-01)
        "address_line_1": "1 Soak Road",
        "address_city": "Nairobi",
    }


def deriv_accounts(plans: list[PlannedUser] | tuple[PlannedUser, ...], seed: int) -> dict[str, Any]:
    """The users' Deriv accounts in the simulator's seed format (KYC complete, residence ke)."""
    whole, cents = divmod(USER_DERIV_BALANCE_CENTS, 100)
    return {
        "accounts": [
            {"loginid": p.loginid, "currency": "USD", "balance": f"{whole}.{cents:02d}", **_settings_of(p)}
            for p in plans
        ],
        "tokens": [
            {"token": deriv_token_of(p, seed), "loginid": p.loginid, "scopes": _CLIENT_SCOPES} for p in plans
        ],
    }


async def load_deriv_accounts(
    deriv_control: str, plans: tuple[PlannedUser, ...], seed: int, deriv_rest: str | None = None
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{deriv_control}/accounts", json=deriv_accounts(plans, seed)) as response:
            if response.status != 201:
                raise RuntimeError(
                    f"the Deriv simulator refused the soak's accounts: {await response.text()}"
                )
        if deriv_rest is None or not any(p.rest for p in plans):
            return
        # after the v3 accounts (the REST side names accounts of the same books)
        url = f"{deriv_rest}/__control__/identities"
        for attempt in range(50):  # the REST port opens just after the control port the probe saw
            try:
                async with http.post(url, json=rest_identities(plans, seed)) as response:
                    if response.status != 201:
                        raise RuntimeError(
                            f"the Deriv REST simulator refused the soak's users: {await response.text()}"
                        )
                    return
            except aiohttp.ClientConnectionError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)


async def create_users(
    database_url: str, plans: tuple[PlannedUser, ...], seed: int, concurrency: int = 8
) -> list[SoakUser]:
    from domain.user.deriv_login_id import DerivLoginId
    from domain.user.device import Device
    from domain.user.email import Email
    from domain.user.kyc_snapshot import KycSnapshot
    from domain.user.password_hash import PasswordHash
    from domain.user.phone_number import PhoneNumber
    from domain.user.user import User
    from persistence.auth_store import SqlRefreshTokenStore
    from persistence.engine import create_engine
    from persistence.unit_of_work import SqlUnitOfWork

    engine = create_engine(database_url, pool_size=concurrency)
    sessions = SqlRefreshTokenStore(engine, ttl=SESSION_TTL)
    gate = asyncio.Semaphore(concurrency)

    async def one(plan: PlannedUser) -> SoakUser:
        async with gate:
            now = datetime.now(UTC)
            user = User.register(
                email=Email(f"{plan.loginid.lower()}@chaos.sim"),
                phone=PhoneNumber.mpesa(plan.phone),
                password_hash=PasswordHash(UNUSABLE_PASSWORD_HASH),
                now=now,
            )
            user.verify_phone(now=now)
            if plan.rest:
                # moved from v3 to the new API: bound by nickname, the v3 KYC snapshot kept
                user.bind_deriv_account(DerivLoginId.rest(rest_nickname_of(plan)), now=now)
                user.take_kyc_snapshot(KycSnapshot.from_get_settings(_settings_of(plan), now), now=now)
            else:
                user.bind_deriv_account(DerivLoginId(plan.loginid), now=now)
            user.add_device(Device.register(DEVICE_ID, "chaos soak", now=now), now=now)
            deriv_token = deriv_token_of(plan, seed)
            async with SqlUnitOfWork(engine) as uow:
                await uow.users.add(user)
                await uow.commit()
            async with SqlUnitOfWork(engine) as uow:
                await uow.users.store_deriv_credentials(
                    user.id, token=deriv_token, scopes=_REST_SCOPES if plan.rest else tuple(_CLIENT_SCOPES)
                )
                await uow.commit()
            session = await sessions.issue(user_id=user.id, device_id=DEVICE_ID, now=now)
            return SoakUser(plan, str(user.id), session.family_id, deriv_token)

    try:
        return list(await asyncio.gather(*(one(plan) for plan in plans)))
    finally:
        await engine.dispose()

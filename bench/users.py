"""Bench users, made through the public API as a frontend would: register, phone code read from the
dev-only DevService, login, and a Deriv account of their own at the simulator, bound.

Each user has its own client IP (x-forwarded-for, believed from loopback as from the HTTP bridge), so
the per-IP rate limits and the 5-transactions-per-hour velocity rule see what many real users would
make. Phones end in 9xxx and do not start with 000: none of the Daraja simulator's magic outcomes.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

PASSWORD = "bench horse battery 9"
DEPOSITS_PER_USER = 5  # AmlLimits.max_transactions_per_hour


def plain_phone() -> str:
    """A Kenyan mobile number the Daraja simulator lets succeed (no magic suffix, not the lab range)."""
    return f"+2547{1000 + secrets.randbelow(9000)}9{secrets.randbelow(1000):03d}"


def payer_phone(n: int) -> str:
    """The n-th of distinct phones of plain_phone's pattern (a deposit paid from a phone of its own)."""
    return f"+2547{1000 + (n // 1000) % 9000}9{n % 1000:03d}"


@dataclass
class BenchUser:
    ip: str
    token: str
    loginid: str

    def metadata(self, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"), ("x-forwarded-for", self.ip), *extra)


async def fund_agent(control_url: str, amount: str) -> None:
    """Give the Deriv simulator's payment agent (CR90000000) `amount` USD more: its float for a run."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{control_url}/accounts/CR90000000/adjust", json={"amount": amount, "note": "bench float"}
        ) as r,
    ):
        r.raise_for_status()


async def add_deriv_accounts(control_url: str, count: int, run: str) -> list[tuple[str, str]]:
    """(loginid, token) of `count` new KYC-complete Kenyan USD accounts at the Deriv simulator."""
    import aiohttp

    base = 91_000_000 + secrets.randbelow(8_000_000)
    accounts, tokens, pairs = [], [], []
    for i in range(count):
        loginid, token = f"CR{base + i}", f"bench-{run}-{i}"
        accounts.append(
            {
                "loginid": loginid,
                "user_id": base + i,
                "currency": "USD",
                "balance": "0.00",
                "first_name": "Bench",
                "last_name": f"User{i}",
                "email": f"bench{i}.{run}@clients.sim",
                "residence": "ke",
                "phone": plain_phone(),
            }
        )
        tokens.append(
            {
                "token": token,
                "loginid": loginid,
                "scopes": ["read", "trade", "trading_information", "payments"],
            }
        )
        pairs.append((loginid, token))
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{control_url}/accounts", json={"accounts": accounts, "tokens": tokens}) as response,
    ):
        if response.status != 201:
            raise RuntimeError(f"simulator refused the bench accounts: {await response.text()}")
    return pairs


async def _make_user(channel: Any, index: int, deriv: tuple[str, str], run: str) -> BenchUser:
    from penpay.auth.v1 import auth_pb2, auth_pb2_grpc
    from penpay.dev.v1 import dev_pb2, dev_pb2_grpc

    auth = auth_pb2_grpc.AuthServiceStub(channel)
    dev = dev_pb2_grpc.DevServiceStub(channel)
    # a fresh address per user and run: the rate limits' windows (in Redis) outlive a run
    spot = 1 + secrets.randbelow(2**24 - 2)
    ip = f"10.{spot >> 16}.{(spot >> 8) & 255}.{spot & 255}"
    forwarded = (("x-forwarded-for", ip),)
    email, phone = f"bench{index}.{run}@example.co.ke", plain_phone()
    await auth.Register(
        auth_pb2.RegisterRequest(email=email, phone_number=phone, password=PASSWORD), metadata=forwarded
    )
    session = await auth.Login(
        auth_pb2.LoginRequest(
            login=email, password=PASSWORD, device_id=f"bench-device-{index:04d}", device_name="bench"
        ),
        metadata=forwarded,
    )
    user = BenchUser(ip, session.access_token, deriv[0])
    await auth.RequestPhoneVerification(auth_pb2.RequestPhoneVerificationRequest(), metadata=user.metadata())
    sent = await dev.ListSentMessages(
        dev_pb2.ListSentMessagesRequest(channel="sms"), metadata=user.metadata()
    )
    code = sent.messages[0].body.split("code is ")[1][:6]
    await auth.VerifyPhone(auth_pb2.VerifyPhoneRequest(phone_number=phone, code=code), metadata=forwarded)
    await auth.BindDerivAccount(
        auth_pb2.BindDerivAccountRequest(deriv_token=deriv[1]), metadata=user.metadata()
    )
    return user


async def _make_user_retrying(channel: Any, index: int, deriv: tuple[str, str], run: str) -> BenchUser:
    """Set-up only: a user whose making failed (INTERNAL: a deadlock on verification_codes when users
    ask for codes concurrently, see bench/README.md) is made again under a new email and phone."""
    import grpc

    for attempt in range(3):
        try:
            return await _make_user(channel, index + 100_000 * attempt, deriv, f"{run}{attempt}")
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.INTERNAL or attempt == 2:
                raise
    raise AssertionError("unreachable")


async def make_users(addr: str, control_url: str, count: int) -> list[BenchUser]:
    import grpc

    run = secrets.token_hex(3)
    derivs = await add_deriv_accounts(control_url, count, run)
    async with grpc.aio.insecure_channel(addr) as channel:
        semaphore = asyncio.Semaphore(8)

        async def one(i: int) -> BenchUser:
            async with semaphore:
                return await _make_user_retrying(channel, i + 1, derivs[i], run)

        return list(await asyncio.gather(*(one(i) for i in range(count))))

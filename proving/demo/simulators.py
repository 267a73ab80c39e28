"""What the demo reads from (and, once, asks of) the simulators' control APIs.

Deriv (`penpay sim deriv`, control on its own port, default http://127.0.0.1:8768):
  GET  /accounts/{loginid}   balance as a decimal string
  GET  /mailbox/{loginid}    {"latest": the newest active verification code or null}
  POST /accounts             open an extra simulated client (a demo user of its own)
Daraja (`penpay sim mpesa`, control under /__control__ on the API's port):
  GET  /__control__/books/phone/{msisdn}   {"charged", "paid"} in whole shillings, and the
                                           shortcodes that collected ("charged_by") and paid ("paid_from")
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from proving.simulator_books import minor_units, mpesa_control_base

# The seeded clients' scopes (deriv_gateway/simulator/accounts.py): PenPay needs read and payments.
CLIENT_SCOPES = ("read", "trade", "trading_information", "payments")


class ControlApiError(Exception):
    pass


async def _json(session: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    try:
        async with session.request(method, url, json=body) as response:
            if response.status >= 300:
                raise ControlApiError(
                    f"{method} {url}: HTTP {response.status} {(await response.text())[:300]}"
                )
            return await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as error:
        raise ControlApiError(f"{method} {url}: {error or type(error).__name__}") from error


@dataclass(frozen=True, slots=True)
class SimulatedDerivClient:
    loginid: str
    token: str


class DerivSimulatorControl:
    def __init__(self, session: aiohttp.ClientSession, control_url: str) -> None:
        self._session = session
        self.base_url = control_url.rstrip("/")

    async def balance_cents(self, loginid: str) -> int:
        account = await _json(self._session, "GET", f"{self.base_url}/accounts/{loginid}")
        return minor_units(account["balance"])

    async def latest_code(self, loginid: str) -> str | None:
        mailbox = await _json(self._session, "GET", f"{self.base_url}/mailbox/{loginid}")
        latest = mailbox.get("latest")
        return str(latest) if latest else None

    async def open_client_account(
        self, *, first_name: str, last_name: str, email: str
    ) -> SimulatedDerivClient:
        """A new real-money USD client in Kenya with a complete profile (KYC acceptable), empty."""
        loginid = await self._unused_loginid()
        token = f"sim-demo-{secrets.token_hex(12)}"
        await _json(
            self._session,
            "POST",
            f"{self.base_url}/accounts",
            {
                "accounts": [
                    {
                        "loginid": loginid,
                        "user_id": int(loginid[2:]),
                        "currency": "USD",
                        "balance": "0.00",
                        "first_name": first_name,
                        "last_name": last_name,
                        "email": email,
                        "residence": "ke",
                    }
                ],
                "tokens": [
                    {"token": token, "loginid": loginid, "scopes": list(CLIENT_SCOPES)},
                ],
            },
        )
        return SimulatedDerivClient(loginid, token)

    async def _unused_loginid(self) -> str:
        for _ in range(5):
            loginid = f"CR{91_000_000 + secrets.randbelow(9_000_000)}"
            try:
                async with self._session.get(f"{self.base_url}/accounts/{loginid}") as response:
                    if response.status == 404:  # POST /accounts would overwrite an existing one
                        return loginid
            except (aiohttp.ClientError, TimeoutError) as error:
                raise ControlApiError(f"GET {self.base_url}/accounts/{loginid}: {error}") from error
        raise ControlApiError("found no unused CR loginid in the Deriv simulator")


@dataclass(frozen=True, slots=True)
class PhoneBooks:
    charged_cents: int  # STK Push collections from the phone
    paid_cents: int  # B2C payouts to the phone
    # The organisation's shortcodes that collected from (STK BusinessShortCode) and paid (B2C PartyA)
    # the phone: a paybill collects, a B2C shortcode of its own pays out.
    charged_by: tuple[str, ...] = ()
    paid_from: tuple[str, ...] = ()


class MpesaSimulatorControl:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self.control_url = mpesa_control_base(base_url)

    async def phone(self, msisdn: str) -> PhoneBooks:
        books = await _json(self._session, "GET", f"{self.control_url}/books/phone/{msisdn.lstrip('+')}")
        return PhoneBooks(
            int(books["charged"]) * 100,
            int(books["paid"]) * 100,
            tuple(books.get("charged_by", ())),
            tuple(books.get("paid_from", ())),
        )

    async def pay_paybill(self, *, shortcode: str, phone: str, amount_cents: int, account: str) -> Any:
        """The customer pays the paybill from their phone (the simulator's stand-in for it)."""
        body = {
            "shortcode": shortcode,
            "phone": phone.lstrip("+"),
            "amount": amount_cents // 100,
            "account": account,
        }
        return await _json(self._session, "POST", f"{self.control_url}/c2b/pay", body)


class SmsSimulatorControl:
    """The SMS simulator's mailbox (sms_adapter/simulator.py): what PenPay sent to a phone."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")

    async def bodies_to(self, phone: str) -> list[str]:
        """Bodies of the messages to `phone`, newest first."""
        answer = await _json(
            self._session, "GET", f"{self.base_url}/__control__/messages?to={quote(phone)}&limit=20"
        )
        return [str(m.get("body", "")) for m in answer.get("messages", [])]


class DerivRestSimulatorControl:
    """The Deriv REST simulator's control API: each books account's name on the new API."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")

    async def nickname_of(self, loginid: str) -> str:
        """The account's nickname on the new API, giving it one when it has none yet (a client
        the demo opened on the v3 simulator)."""
        state = await _json(self._session, "GET", f"{self.base_url}/__control__/state")
        for identity in state.get("identities", []):
            if identity.get("loginid") == loginid:
                return str(identity["nickname"])
        nickname = f"demo_{loginid.lower()}"
        await _json(
            self._session,
            "POST",
            f"{self.base_url}/__control__/identities",
            {"identities": [{"loginid": loginid, "nickname": nickname}]},
        )
        return nickname

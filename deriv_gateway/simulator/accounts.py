"""Simulated Deriv accounts, tokens and payment agents, and the built-in default set.

Accounts file / control API shape (amounts as decimal strings or numbers)::

    {"accounts": [{"loginid": "CR90000000", "currency": "USD", "balance": "50000.00",
                   "user_id": 9000, "first_name": "PenPay", "last_name": "Agent",
                   "email": "agent@penpay.sim", "residence": "ke",
                   "payment_agent": {"name": "PenPay Agent", "countries": ["ke"],
                                     "min_withdrawal": "10", "max_withdrawal": "2000"}}],
     "tokens": [{"token": "sim-agent-token", "loginid": "CR90000000",
                 "scopes": ["read", "trade", "trading_information", "payments", "admin"]}]}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .money import CRYPTO, AmountError, digits, format_amount, to_minor

SCOPES = ("read", "trade", "trading_information", "payments", "admin")
LOGINID_RE = re.compile(r"^[A-Z]{2,4}[0-9]{1,10}$")
TOKEN_RE = re.compile(r"^[\w\-]{1,128}$")

# Deriv's paymentagent_config.yml defaults (2024): per-transfer min/max in the account currency
DEFAULT_PA_LIMITS = {"fiat": ("10", "2000"), "crypto": ("0.002", "5")}

COUNTRY_NAMES = {"ke": "Kenya", "ug": "Uganda", "tz": "Tanzania", "ng": "Nigeria", "id": "Indonesia"}


class SeedError(ValueError):
    pass


@dataclass
class PaymentAgent:
    name: str
    countries: list[str]
    min_withdrawal: int  # minor units
    max_withdrawal: int
    email: str = ""
    phone_numbers: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    summary: str = ""
    information: str = ""
    commission_deposit: float = 0.0
    commission_withdrawal: float = 0.0
    supported_payment_methods: list[str] = field(default_factory=list)
    status: str = "authorized"


@dataclass
class Account:
    loginid: str
    user_id: int
    currency: str
    balance: int  # minor units, never float
    first_name: str
    last_name: str
    email: str
    residence: str = "ke"
    phone: str = "+254700000000"
    date_of_birth: int = 631152000
    address_line_1: str = "1 Moi Avenue"
    address_city: str = "Nairobi"
    address_postcode: str = "00100"
    address_state: str = "Nairobi"
    created_at: int = 1704067200
    disabled: bool = False
    payment_agent: PaymentAgent | None = None

    @property
    def is_virtual(self) -> bool:
        return self.loginid.startswith("VR")

    @property
    def broker(self) -> str:
        return re.sub(r"[0-9]+$", "", self.loginid)

    @property
    def fullname(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def landing_company_name(self) -> str:
        return "virtual" if self.is_virtual else "svg"

    @property
    def landing_company_fullname(self) -> str:
        return "Deriv Limited" if self.is_virtual else "Deriv (SVG) LLC"

    @property
    def currency_type(self) -> str:
        return "crypto" if self.currency in CRYPTO else "fiat"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "loginid": self.loginid,
            "user_id": self.user_id,
            "currency": self.currency,
            "balance": format_amount(self.balance, self.currency),
            "first_name": self.first_name,
            "last_name": self.last_name,
            "email": self.email,
            "residence": self.residence,
            "phone": self.phone,
            "is_virtual": self.is_virtual,
            "disabled": self.disabled,
        }
        if self.payment_agent is not None:
            pa = self.payment_agent
            data["payment_agent"] = {
                "name": pa.name,
                "countries": list(pa.countries),
                "min_withdrawal": format_amount(pa.min_withdrawal, self.currency),
                "max_withdrawal": format_amount(pa.max_withdrawal, self.currency),
                "email": pa.email,
                "status": pa.status,
            }
        return data


@dataclass
class Token:
    token: str
    loginid: str
    scopes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "loginid": self.loginid, "scopes": list(self.scopes)}


def parse_account(data: dict[str, Any]) -> Account:
    try:
        loginid = str(data["loginid"]).upper()
        currency = str(data.get("currency", "USD"))
        digits(currency)
        if not LOGINID_RE.match(loginid):
            raise SeedError(f"bad loginid {loginid!r}")
        balance = to_minor(data.get("balance", 0), currency)
        if balance < 0:
            raise SeedError(f"{loginid}: negative balance")
        pa_data = data.get("payment_agent")
        pa = None
        if pa_data:
            kind = "crypto" if currency in CRYPTO else "fiat"
            lo, hi = DEFAULT_PA_LIMITS[kind]
            pa = PaymentAgent(
                name=str(pa_data.get("name", f"{data.get('first_name', '')} {data.get('last_name', '')}")),
                countries=[str(c).lower() for c in pa_data.get("countries", [data.get("residence", "ke")])],
                min_withdrawal=to_minor(pa_data.get("min_withdrawal", lo), currency),
                max_withdrawal=to_minor(pa_data.get("max_withdrawal", hi), currency),
                email=str(pa_data.get("email", data.get("email", ""))),
                phone_numbers=[str(p) for p in pa_data.get("phone_numbers", [])],
                urls=[str(u) for u in pa_data.get("urls", [])],
                summary=str(pa_data.get("summary", "")),
                information=str(pa_data.get("information", "")),
                commission_deposit=float(pa_data.get("commission_deposit", 0)),
                commission_withdrawal=float(pa_data.get("commission_withdrawal", 0)),
                supported_payment_methods=[str(m) for m in pa_data.get("supported_payment_methods", [])],
                status=str(pa_data.get("status", "authorized")),
            )
        extra = {
            k: data[k]
            for k in (
                "phone",
                "date_of_birth",
                "address_line_1",
                "address_city",
                "address_postcode",
                "address_state",
                "created_at",
            )
            if k in data
        }
        return Account(
            loginid=loginid,
            user_id=int(data.get("user_id", int(re.sub(r"[^0-9]", "", loginid)))),
            currency=currency,
            balance=balance,
            first_name=str(data.get("first_name", "")),
            last_name=str(data.get("last_name", "")),
            email=str(data.get("email", f"{loginid.lower()}@sim.deriv")),
            residence=str(data.get("residence", "ke")).lower(),
            disabled=bool(data.get("disabled", False)),
            payment_agent=pa,
            **extra,
        )
    except (KeyError, TypeError, AmountError) as exc:
        raise SeedError(f"bad account {data!r}: {exc}") from exc


def parse_token(data: dict[str, Any]) -> Token:
    try:
        token = str(data["token"])
        scopes = tuple(str(s) for s in data.get("scopes", ["read"]))
    except (KeyError, TypeError) as exc:
        raise SeedError(f"bad token {data!r}") from exc
    if not TOKEN_RE.match(token):
        raise SeedError(f"token {token!r} does not match ^[\\w\\-]{{1,128}}$")
    unknown = set(scopes) - set(SCOPES)
    if unknown:
        raise SeedError(f"token {token!r}: unknown scopes {sorted(unknown)}")
    return Token(token=token, loginid=str(data["loginid"]).upper(), scopes=scopes)


def parse_seed(data: dict[str, Any]) -> tuple[list[Account], list[Token]]:
    accounts = [parse_account(a) for a in data.get("accounts", [])]
    tokens = [parse_token(t) for t in data.get("tokens", [])]
    known = {a.loginid for a in accounts}
    for t in tokens:
        if t.loginid not in known:
            raise SeedError(f"token {t.token!r} names unknown loginid {t.loginid}")
    return accounts, tokens


_CLIENT_SCOPES = ["read", "trade", "trading_information", "payments"]

# Documented in deriv_gateway.simulator's docstring; keep the two in step.
DEFAULT_SEED: dict[str, Any] = {
    "accounts": [
        {
            "loginid": "CR90000000",
            "user_id": 9000,
            "currency": "USD",
            "balance": "50000.00",
            "first_name": "PenPay",
            "last_name": "Agent",
            "email": "agent@penpay.sim",
            "residence": "ke",
            "phone": "+254711000000",
            "payment_agent": {
                "name": "PenPay Agent",
                "countries": ["ke"],
                "min_withdrawal": "10",
                "max_withdrawal": "2000",
                "email": "agent@penpay.sim",
                "phone_numbers": ["+254711000000"],
                "urls": ["https://penpay.sim"],
                "summary": "M-Pesa deposits and withdrawals",
                "supported_payment_methods": ["M-Pesa"],
            },
        },
        {
            "loginid": "CR90000001",
            "user_id": 9001,
            "currency": "USD",
            "balance": "1000.00",
            "first_name": "Alice",
            "last_name": "Wanjiru",
            "email": "alice@clients.sim",
            "residence": "ke",
            "phone": "+254722000001",
        },
        {
            "loginid": "VRTC90000001",
            "user_id": 9001,
            "currency": "USD",
            "balance": "10000.00",
            "first_name": "Alice",
            "last_name": "Wanjiru",
            "email": "alice@clients.sim",
            "residence": "ke",
        },
        {
            "loginid": "CR90000002",
            "user_id": 9002,
            "currency": "USD",
            "balance": "250.00",
            "first_name": "Brian",
            "last_name": "Otieno",
            "email": "brian@clients.sim",
            "residence": "ke",
            "phone": "+254722000002",
        },
        {
            "loginid": "CR90000003",
            "user_id": 9003,
            "currency": "USD",
            "balance": "0.00",
            "first_name": "Carol",
            "last_name": "Njeri",
            "email": "carol@clients.sim",
            "residence": "ke",
            "phone": "+254722000003",
        },
        {
            "loginid": "CR90000004",
            "user_id": 9004,
            "currency": "USD",
            "balance": "100.00",
            "first_name": "Daniel",
            "last_name": "Mugisha",
            "email": "daniel@clients.sim",
            "residence": "ug",
            "phone": "+256772000004",
        },
    ],
    "tokens": [
        {"token": "sim-agent-token", "loginid": "CR90000000", "scopes": [*_CLIENT_SCOPES, "admin"]},
        {"token": "sim-agent-read", "loginid": "CR90000000", "scopes": ["read"]},
        {"token": "sim-client1-token", "loginid": "CR90000001", "scopes": _CLIENT_SCOPES},
        {"token": "sim-client1-read", "loginid": "CR90000001", "scopes": ["read"]},
        {"token": "sim-client2-token", "loginid": "CR90000002", "scopes": _CLIENT_SCOPES},
        {"token": "sim-client3-token", "loginid": "CR90000003", "scopes": _CLIENT_SCOPES},
        {"token": "sim-client4-token", "loginid": "CR90000004", "scopes": _CLIENT_SCOPES},
        {"token": "sim-virtual-token", "loginid": "VRTC90000001", "scopes": _CLIENT_SCOPES},
    ],
}

"""The REST world's state over the v3 simulator's Books: one set of accounts, two APIs.

A new-API identity is a Books account seen through REST: a nickname (how a payment agent addresses
a client), an agent id (for payment agents), the client's payment-agent settings and bearer tokens
(PATs and OAuth access tokens). Money only moves through `Books.move`, so the v3 control API, the
consistency checker and the chaos soak see REST transfers as they see v3 ones.

Pure state, no I/O; time comes in as `now` (the shared simulator clock).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..books import Books, VerificationMail

# what the default v3 seed's accounts are called on the new API
DEFAULT_IDENTITIES: list[dict[str, Any]] = [
    {"loginid": "CR90000000", "nickname": "penpay_agent", "agent_id": 1001},
    {"loginid": "CR90000001", "nickname": "alice_w"},
    {"loginid": "CR90000002", "nickname": "brian_o"},
    {"loginid": "CR90000003", "nickname": "carol_n"},
    {"loginid": "CR90000004", "nickname": "daniel_m"},
]
DEFAULT_REST_TOKENS: list[dict[str, Any]] = [
    {"token": "sim-rest-agent-pat", "loginid": "CR90000000", "scopes": ["payment", "account_manage"]},
    {"token": "sim-rest-agent-trade", "loginid": "CR90000000", "scopes": ["trade"]},
    {"token": "sim-rest-client1-pat", "loginid": "CR90000001", "scopes": ["payment", "account_manage"]},
    {"token": "sim-rest-client2-pat", "loginid": "CR90000002", "scopes": ["payment"]},
    {"token": "sim-rest-client3-pat", "loginid": "CR90000003", "scopes": ["payment"]},
    {"token": "sim-rest-client4-pat", "loginid": "CR90000004", "scopes": ["payment"]},
]
REST_SCOPES = ("payment", "trade", "account_manage", "application_read")

# how many wrong codes before OtpValidationRateLimitExceeded, and for how long (not documented)
OTP_MAX_FAILURES = 3
OTP_LOCK_SECONDS = 300
OTP_RESEND_SECONDS = 60
OTP_TTL_SECONDS = 300
ACCESS_TOKEN_TTL = 3600  # the documented example's expires_in


@dataclass
class Identity:
    loginid: str
    nickname: str
    agent_id: int | None = None
    deposit_enabled: bool = True
    withdraw_enabled: bool = True
    show_real_name: bool = False

    def settings(self) -> dict[str, bool]:
        return {
            "deposit_enabled": self.deposit_enabled,
            "withdraw_enabled": self.withdraw_enabled,
            "show_real_name": self.show_real_name,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "loginid": self.loginid,
            "nickname": self.nickname,
            "agent_id": self.agent_id,
            **self.settings(),
        }


@dataclass
class BearerToken:
    token: str
    loginid: str
    scopes: tuple[str, ...]
    kind: str = "pat"  # pat | oauth
    expires_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "loginid": self.loginid,
            "scopes": list(self.scopes),
            "kind": self.kind,
            "expires_at": self.expires_at,
        }


@dataclass
class Operation:
    """A transfer or withdrawal a request_id names. Money moves when (and only when) it completes."""

    kind: str  # transfer | withdraw
    request_id: str
    source: str  # loginid debited
    target: str  # loginid credited
    caller: str  # loginid whose token made it
    amount: int  # minor units
    currency: str
    notes: str
    status: str  # pending | complete | rejected | failed
    settle_at: float | None = None
    settle_to: str = "complete"
    transaction_id: int | None = None
    transfer_id: int | None = None  # Books transfer, once complete
    created_at: float = 0.0  # when Deriv accepted it (the wallet transactions list it from then)
    reversal_id: int | None = None  # Books transfer that moved it back (status reverted)

    def visible_to(self, loginid: str) -> bool:
        return loginid in (self.source, self.target)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "request_id": self.request_id,
            "source": self.source,
            "target": self.target,
            "caller": self.caller,
            "amount_minor": self.amount,
            "currency": self.currency,
            "notes": self.notes,
            "status": self.status,
            "transaction_id": self.transaction_id,
        }


@dataclass
class OtpState:
    """Per client: the latest code's parameters, the resend floor and the wrong-code lockout."""

    mail: VerificationMail | None = None
    next_request_at: int = 0
    failures: int = 0
    locked_until: int = 0


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    loginid: str
    challenge: str
    expires_at: float
    used: bool = False


@dataclass
class RestState:
    books: Books
    seed: int
    identities: dict[str, Identity] = field(default_factory=dict)  # by loginid
    tokens: dict[str, BearerToken] = field(default_factory=dict)
    operations: dict[tuple[str, str], Operation] = field(default_factory=dict)  # (kind, request_id)
    otp: dict[str, OtpState] = field(default_factory=dict)  # by client loginid
    auth_codes: dict[str, AuthCode] = field(default_factory=dict)
    refresh_tokens: dict[str, BearerToken] = field(default_factory=dict)
    # Books transfer id -> request_id, so wallet transactions can be filtered by request_id
    request_ids: dict[int, str] = field(default_factory=dict)
    # Books transfer id -> the operation it belongs to (its original move, or its reversal)
    moves: dict[int, Operation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"{self.seed}:rest")

    @classmethod
    def default(cls, books: Books, seed: int) -> RestState:
        state = cls(books, seed)
        for ident in DEFAULT_IDENTITIES:
            if ident["loginid"] in books.accounts:
                state.add_identity(ident)
        for tok in DEFAULT_REST_TOKENS:
            if tok["loginid"] in state.identities:
                state.add_token(tok)
        return state

    # ---- identities and tokens --------------------------------------------------------------------

    def add_identity(self, data: dict[str, Any]) -> Identity:
        loginid = str(data["loginid"]).upper()
        if loginid not in self.books.accounts:
            raise ValueError(f"no such account {loginid}")
        nickname = str(data["nickname"])
        clash = self.by_nickname(nickname)
        if clash is not None and clash.loginid != loginid:
            raise ValueError(f"nickname {nickname!r} is taken")
        old = self.identities.get(loginid)
        ident = Identity(
            loginid=loginid,
            nickname=nickname,
            agent_id=int(data["agent_id"]) if data.get("agent_id") is not None else None,
            deposit_enabled=bool(data.get("deposit_enabled", old.deposit_enabled if old else True)),
            withdraw_enabled=bool(data.get("withdraw_enabled", old.withdraw_enabled if old else True)),
            show_real_name=bool(data.get("show_real_name", old.show_real_name if old else False)),
        )
        self.identities[loginid] = ident
        return ident

    def add_token(self, data: dict[str, Any]) -> BearerToken:
        scopes = tuple(str(s) for s in data.get("scopes", ["payment"]))
        if set(scopes) - set(REST_SCOPES):
            raise ValueError(f"unknown scopes {sorted(set(scopes) - set(REST_SCOPES))}")
        loginid = str(data["loginid"]).upper()
        if loginid not in self.identities:
            raise ValueError(f"no new-API identity for {loginid}")
        token = BearerToken(
            str(data["token"]), loginid, scopes, str(data.get("kind", "pat")), data.get("expires_at")
        )
        self.tokens[token.token] = token
        return token

    def by_nickname(self, nickname: str) -> Identity | None:
        return next((i for i in self.identities.values() if i.nickname == nickname), None)

    def by_agent_id(self, agent_id: int) -> Identity | None:
        return next((i for i in self.identities.values() if i.agent_id == agent_id), None)

    def bearer(self, token: str, now: float) -> BearerToken | None:
        found = self.tokens.get(token)
        if found is None or (found.expires_at is not None and now >= found.expires_at):
            return None
        return found

    # ---- ids ----------------------------------------------------------------------------------------

    def secret(self, prefix: str) -> str:
        return f"{prefix}{self._rng.getrandbits(160):040x}"

    def six_digits(self) -> str:
        return f"{self._rng.randrange(10**6):06d}"

    def wallet_id(self, loginid: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"penpay-sim:{loginid}"))

    def wallet_type(self, loginid: str) -> str:
        ident = self.identities.get(loginid)
        return "payment_agent" if ident is not None and ident.agent_id is not None else "main"

    # ---- settlement ---------------------------------------------------------------------------------

    def complete(self, op: Operation, now: int) -> None:
        """Move the money (or fail the operation when the source cannot cover it)."""
        from ..books import InsufficientFunds

        source = self.books.accounts[op.source]
        target = self.books.accounts[op.target]
        try:
            # the v3 kinds: the same economic move, so the consistency checker reads both APIs alike
            transfer = self.books.move(
                "paymentagent_transfer" if op.kind == "transfer" else "paymentagent_withdraw",
                source,
                target,
                op.amount,
                op.notes,
                f"REST {op.kind} {op.request_id}: {op.notes}".strip(),
                op.request_id,
                now,
            )
        except InsufficientFunds:
            op.status = "failed"
            return
        op.status = "complete"
        op.transfer_id = transfer.transfer_id
        op.transaction_id = transfer.debit_transaction_id
        self.request_ids[transfer.transfer_id] = op.request_id
        self.moves[transfer.transfer_id] = op

    def revert(self, op: Operation, now: int) -> None:
        """Deriv reverses a completed operation: the money moves back (a line of its own in both
        APIs' statements) and the operation's wallet transaction reads `reverted`."""
        from ..books import InsufficientFunds

        if op.status != "complete":
            raise ValueError(f"only a complete operation can be reverted (this one is {op.status})")
        try:
            back = self.books.move(
                "paymentagent_transfer" if op.kind == "withdraw" else "paymentagent_withdraw",
                self.books.accounts[op.target],
                self.books.accounts[op.source],
                op.amount,
                f"reversal of {op.request_id}",
                f"REST {op.kind} {op.request_id} reverted",
                f"{op.request_id}-reversal",
                now,
            )
        except InsufficientFunds:
            raise ValueError("the credited account no longer holds the amount") from None
        op.status = "reverted"
        op.reversal_id = back.transfer_id
        self.request_ids[back.transfer_id] = op.request_id
        self.moves[back.transfer_id] = op

    def settle_due(self, now: float, force: bool = False) -> int:
        """Settle every pending operation whose time has come; returns how many settled."""
        settled = 0
        for op in self.operations.values():
            if op.status != "pending" or op.settle_at is None:
                continue
            if force or now >= op.settle_at:
                op.settle_at = None
                if op.settle_to == "complete":
                    self.complete(op, int(now))
                else:
                    op.status = op.settle_to
                settled += 1
        return settled

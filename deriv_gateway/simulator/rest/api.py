"""The REST API's request -> reply logic (sans-I/O): auth, per-token rate limit, faults, endpoints.

`RestApi.handle(request, now)` returns a `Reply` (status, JSON body) and, for the drop faults, what
the I/O layer must do with the connection. Check order: bearer token (401), Deriv-App-ID (401),
the per-token limit (429), scope (403), the OpenAPI request schema when loaded (400 InputError), the
fault rules, then the endpoint's own rules in the documented order.

Decisions where Deriv's documents are silent (README of the anchors, section 12.2):
- a request_id is consumed only by an accepted operation (a refused transfer leaves it free), and
  is unique per kind (transfers, withdrawals) across callers;
- a recipient with `deposit_enabled` false gets `NoClientWallet` ("cannot receive the funds");
  a client with `withdraw_enabled` false gets `InputError`;
- money moves when an operation completes: a `pending` transfer or withdrawal has moved nothing,
  and one that settles `rejected` or `failed` never does;
- 3 wrong codes lock the client's withdrawals for 300 s; a new code may be asked 60 s after the
  last, and lives 300 s (the documented example's spacing).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from ..books import VerificationMail
from ..money import CURRENCY_DIGITS, AmountError, format_amount, to_minor
from .faults import RestFault, RestFaults
from .openapi import OpenApi
from .state import (
    ACCESS_TOKEN_TTL,
    OTP_LOCK_SECONDS,
    OTP_MAX_FAILURES,
    OTP_RESEND_SECONDS,
    OTP_TTL_SECONDS,
    AuthCode,
    BearerToken,
    Identity,
    Operation,
    OtpState,
    RestState,
)

REQUEST_ID_RE = re.compile(r"^[\w\-]{1,128}$")
AMOUNT_RE = re.compile(r"^(?:0|[1-9]\d{0,13})(?:\.\d{1,18})?$")
CODE_RE = re.compile(r"^[0-9]{6}$")
OTP_MAIL_TYPE = "payment_agent_withdraw"
GENERATIONS = ("june", "newer")
AUTH_CODE_TTL = 60


@dataclass
class RestRequest:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: Any = None


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection instead of answering
    delay: float = 0.0  # answer after this many seconds (the I/O layer waits)


@dataclass
class RestConfig:
    generation: str = "newer"  # june: no transfer status, no dry_run, no pending, no clients/me
    per_minute: int = 60  # per token (S-LLM api-overview)
    rate_limit_enabled: bool = True
    require_app_id: bool = True  # S-DOC: always; S-LLM: PATs only. Strict catches a client that forgets
    withdraw_settle_after: float = 0.0  # a withdrawal's `pending` lasts this long (simulator clock)
    issue_refresh_tokens: bool = True
    default_oauth_login: str = "alice_w"
    omit_links: bool = False  # wallet transactions without `links` (seen live, anchors §11)


def _moment(value: str | None, name: str) -> float | None:
    """A wallet filter's date: ISO 8601 or epoch seconds (both are documented)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Refusal(400, "ValidationError", f"{name} must be ISO 8601 or epoch seconds") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _wallet_item(
    request_id: str,
    transaction_id: int | None,
    at: float,
    category: str,
    channel: str,
    status: str,
    minor: int,
    currency: str,
    other: str | None,
) -> dict[str, Any]:
    """One wallet transaction in the shape a client of the live API types (anchors §11)."""
    amount = format_amount(minor, currency)
    meta: dict[str, Any] = {
        "transaction_status": status,
        "transaction_gross_amount": amount,
        "transaction_net_amount": amount,
        "transaction_currency": currency,
    }
    if other is not None:
        meta["source_client_id" if category == "deposit" else "destination_client_id"] = other
    return {
        "request_id": request_id,
        "transaction_id": transaction_id,
        "timestamp": _iso(at),
        "category": category,
        "channel": channel,
        "metadata": meta,
    }


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str, next_request_at: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.next_request_at = next_request_at


@dataclass
class Call:
    """What an endpoint handler sees."""

    request: RestRequest
    caller: Identity
    token: BearerToken
    now: float
    fault: RestFault | None
    params: dict[str, str]

    @property
    def data(self) -> dict[str, Any]:
        body = self.request.body
        inner = body.get("data") if isinstance(body, dict) else None
        if not isinstance(inner, dict):
            raise Refusal(400, "InputError", 'the body must be {"data": {...}}')
        return inner


# (method, regex, endpoint name, handler attribute, scope, newer generation only)
_ROUTES: list[tuple[str, re.Pattern[str], str, str, str, bool]] = [
    ("GET", re.compile(r"^/payment-agents/v1/agents$"), "agents", "agents", "payment", False),
    ("GET", re.compile(r"^/payment-agents/v1/agents/(?P<id>[^/]+)$"), "agent", "agent", "payment", False),
    (
        "GET",
        re.compile(r"^/payment-agents/v1/agent-statistics$"),
        "statistics",
        "statistics",
        "payment",
        False,
    ),
    ("POST", re.compile(r"^/payment-agents/v1/transfer$"), "transfer", "transfer", "payment", False),
    (
        "GET",
        re.compile(r"^/payment-agents/v1/transfer/(?P<request_id>[^/]+)$"),
        "transfer_status",
        "transfer_status",
        "payment",
        True,
    ),
    (
        "POST",
        re.compile(r"^/payment-agents/v1/withdraw/verification_code$"),
        "verification_code",
        "verification_code",
        "payment",
        False,
    ),
    ("POST", re.compile(r"^/payment-agents/v1/withdraw$"), "withdraw", "withdraw", "payment", False),
    (
        "GET",
        re.compile(r"^/payment-agents/v1/withdraw/(?P<request_id>[^/]+)$"),
        "withdraw_status",
        "withdraw_status",
        "payment",
        False,
    ),
    ("GET", re.compile(r"^/payment-agents/v1/clients/me$"), "clients_me", "clients_me", "payment", True),
    (
        "PATCH",
        re.compile(r"^/payment-agents/v1/clients/me$"),
        "clients_me",
        "clients_me_patch",
        "payment",
        True,
    ),
    ("GET", re.compile(r"^/wallet/v1/wallets$"), "wallets", "wallets", "payment", False),
    (
        "GET",
        re.compile(r"^/wallet/v1/transactions/(?P<wallet_type>[^/]+)$"),
        "transactions",
        "transactions",
        "payment",
        False,
    ),
    ("GET", re.compile(r"^/account/v1/nickname$"), "nickname", "nickname", "account_manage", False),
]


def _is_wallet(path: str) -> bool:
    return path.startswith("/wallet/")


class RestApi:
    def __init__(self, state: RestState, config: RestConfig, openapi: OpenApi | None = None) -> None:
        self.state = state
        self.config = config
        self.openapi = openapi
        self.faults = RestFaults(state.seed)
        self._hits: dict[str, deque[float]] = {}
        self.rate_limited = 0
        # schema problems of requests received and replies sent (with the document loaded)
        self.violations: list[str] = []

    # ---- envelopes ---------------------------------------------------------------------------------

    @staticmethod
    def metadata(request: RestRequest) -> dict[str, Any]:
        return {"endpoint": request.path, "method": request.method, "timing": 0.004}

    def ok(self, request: RestRequest, data: Any) -> Reply:
        return Reply(200, {"data": data, "errors": [], "metadata": self.metadata(request)})

    def error(self, request: RestRequest, refusal: Refusal) -> Reply:
        detail: dict[str, Any] = {"message": refusal.message}
        if refusal.next_request_at is not None:
            detail["next_request_at"] = refusal.next_request_at
        if _is_wallet(request.path):
            # wallet endpoints: a flat list, no data/metadata (third-party observation, anchors §11)
            item: dict[str, Any] = {
                "status": refusal.status,
                "code": refusal.code,
                "message": refusal.message,
            }
            if refusal.next_request_at is not None:
                item["next_request_at"] = refusal.next_request_at
            return Reply(refusal.status, {"errors": [item]})
        body = {
            "data": {},
            "errors": [{"status": refusal.status, "code": refusal.code, "detail": detail}],
            "metadata": self.metadata(request),
        }
        return Reply(refusal.status, body)

    # ---- dispatch ----------------------------------------------------------------------------------

    def handle(self, request: RestRequest, now: float) -> Reply:
        self.state.settle_due(now)
        if self.openapi is not None and request.body is not None:
            self.violations.extend(self.openapi.check_request(request.method, request.path, request.body))
        reply = self._handle(request, now)
        if self.openapi is not None and not reply.drop:
            problems = self.openapi.check_response(request.method, request.path, reply.status, reply.body)
            # undocumented statuses (429, the June 404 of a newer path) are expected here
            self.violations.extend(p for p in problems if "is not documented" not in p and "no such" not in p)
        return reply

    def _route(self, request: RestRequest) -> tuple[str, str, str, dict[str, str]] | None:
        for method, regex, endpoint, attr, scope, newer in _ROUTES:
            found = regex.match(request.path)
            if found and method == request.method:
                if newer and self.config.generation == "june":
                    return None
                return endpoint, attr, scope, found.groupdict()
        return None

    def _handle(self, request: RestRequest, now: float) -> Reply:
        route = self._route(request)
        if route is None:
            return Reply(
                404, {"errors": [{"status": 404, "code": "NotFound", "message": "No such endpoint"}]}
            )
        endpoint, attr, scope, params = route
        try:
            token = self._authenticate(request, now)
            self._rate_limit(token, now)
            if scope not in token.scopes:
                raise Refusal(403, "InputError", f"The {scope} scope is required for this endpoint")
            caller = self.state.identities[token.loginid]
            if self.openapi is not None and request.body is not None:
                problems = self.openapi.check_request(request.method, request.path, request.body)
                if problems:
                    raise Refusal(400, "InputError", problems[0])
            fields = self._fault_fields(request, params)
            fault = self.faults.decide(endpoint, fields)
            early = self._fault_before(request, fault, now)
            if early is not None:
                return early
            call = Call(request, caller, token, now, fault, params)
            reply = getattr(self, attr)(call)
        except Refusal as refusal:
            return self.error(request, refusal)
        return self._fault_after(request, fault, reply)

    def _authenticate(self, request: RestRequest, now: float) -> BearerToken:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        token = self.state.bearer(value.strip(), now) if scheme.lower() == "bearer" else None
        if token is None:
            raise Refusal(401, "InputError", "Invalid or missing authentication credentials")
        if not request.headers.get("deriv-app-id") and (self.config.require_app_id or token.kind == "pat"):
            raise Refusal(401, "InputError", "Deriv-App-ID header is required for PAT tokens")
        return token

    def _rate_limit(self, token: BearerToken, now: float) -> None:
        if not self.config.rate_limit_enabled:
            return
        hits = self._hits.setdefault(token.token, deque())
        while hits and hits[0] <= now - 60.0:
            hits.popleft()
        if len(hits) >= self.config.per_minute:
            self.rate_limited += 1
            retry = int(hits[0] + 60.0) + 1
            raise Refusal(429, "RateLimit", "Rate limit exceeded", next_request_at=retry)
        hits.append(now)

    def reset_limits(self) -> None:
        self._hits.clear()

    @staticmethod
    def _fault_fields(request: RestRequest, params: dict[str, str]) -> dict[str, Any]:
        body = request.body
        data = body.get("data") if isinstance(body, dict) else None
        fields: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
        fields.update(params)
        return fields

    def _fault_before(self, request: RestRequest, fault: RestFault | None, now: float) -> Reply | None:
        if fault is None:
            return None
        if fault.kind == "drop_before":
            return Reply(0, None, drop=True)
        if fault.kind == "transient_500":
            code = fault.code or {"/payment-agents/v1/transfer": "TransferFailed"}.get(
                request.path, "InternalError"
            )
            return self.error(request, Refusal(500, code, "A transient failure; retrying is reasonable"))
        if fault.kind == "forbidden":
            return self.error(
                request, Refusal(403, "InputError", "The payment scope is required for this endpoint")
            )
        if fault.kind == "rate_limit":
            self.rate_limited += 1
            at = int(now) + fault.retry_in
            return self.error(request, Refusal(429, "RateLimit", "Rate limit exceeded", next_request_at=at))
        if fault.kind == "otp_rate_limit":
            at = int(now) + fault.retry_in
            message = "Too many OTP requests. Please try again later."
            return self.error(request, Refusal(400, "OtpRateLimitExceeded", message, next_request_at=at))
        return None

    def _fault_after(self, request: RestRequest, fault: RestFault | None, reply: Reply) -> Reply:
        if fault is None:
            return reply
        if fault.kind == "drop_after":
            return Reply(0, None, drop=True)
        if fault.kind == "timeout_after":
            return self.error(request, Refusal(504, "InternalError", "Gateway timeout"))
        if fault.kind == "delay_after":
            reply.delay = fault.delay
            return reply
        if fault.kind == "foreign_answer" and isinstance(reply.body, dict):
            meta = reply.body.get("metadata")
            if isinstance(meta, dict):
                meta["endpoint"] = request.path.rsplit("/", 1)[0] + "/someone-elses-request"
            return reply
        if fault.kind == "request_id_used":
            return self.error(request, Refusal(400, "RequestIDUsed", "The request_id has already been used"))
        return reply

    # ---- helpers -----------------------------------------------------------------------------------

    def _amount(self, data: dict[str, Any], currency: str) -> int:
        amount = data.get("amount")
        if not isinstance(amount, str) or not AMOUNT_RE.match(amount):
            raise Refusal(400, "InputError", "amount must be a decimal string")
        try:
            minor = to_minor(Decimal(amount), currency)
        except AmountError as exc:
            raise Refusal(400, "InputError", f"amount: {exc}") from None
        if minor <= 0:
            raise Refusal(400, "InputError", "amount must be positive")
        return minor

    @staticmethod
    def _currency(data: dict[str, Any]) -> str:
        currency = data.get("currency")
        if not isinstance(currency, str) or currency not in CURRENCY_DIGITS:
            raise Refusal(400, "InputError", "currency is not a supported currency code")
        return currency

    def _request_id(self, kind: str, data: dict[str, Any]) -> str | None:
        rid = data.get("request_id")
        if rid is None:
            return None
        if not isinstance(rid, str) or not REQUEST_ID_RE.match(rid):
            raise Refusal(400, "InvalidRequestIDFormat", "request_id must be 1-128 letters, digits, _ or -")
        return rid

    def _check_unused(self, kind: str, rid: str | None) -> None:
        if rid is not None and (kind, rid) in self.state.operations:
            raise Refusal(400, "RequestIDUsed", "The request_id has already been used")

    def _new_id(self, kind: str) -> str:
        # an operation sent without request_id still needs a key in the registry
        return f"sim-{kind}-{len(self.state.operations) + 1}"

    def _agent(self, agent_id: Any) -> Identity:
        if not isinstance(agent_id, int) or isinstance(agent_id, bool):
            raise Refusal(400, "InputError", "agent_id must be an integer")
        if agent_id < 1 and self.config.generation == "newer":
            raise Refusal(400, "InvalidAgentID", "agent_id must be at least 1")
        agent = self.state.by_agent_id(agent_id)
        if agent is None or self.state.books.accounts[agent.loginid].payment_agent is None:
            raise Refusal(400, "AgentIDInvalid", "No payment agent exists with this agent_id")
        return agent

    def _active(self, agent: Identity) -> None:
        account = self.state.books.accounts[agent.loginid]
        assert account.payment_agent is not None
        if account.payment_agent.status != "authorized" or account.disabled:
            raise Refusal(400, "AgentInactive", "The payment agent is inactive")

    def _agent_view(self, agent: Identity, own: bool) -> dict[str, Any]:
        account = self.state.books.accounts[agent.loginid]
        pa = account.payment_agent
        assert pa is not None and agent.agent_id is not None
        view: dict[str, Any] = {
            "id": agent.agent_id,
            "created_at": account.created_at * 1000,
            "is_listed": pa.status == "authorized",
            "name": pa.name,
            "information": pa.information or pa.summary,
            "email": pa.email or None,
            "phone_numbers": list(pa.phone_numbers),
            "payment_methods": list(pa.supported_payment_methods),
            "countries": list(pa.countries),
            "urls": list(pa.urls),
        }
        if self.config.generation == "newer":
            view["nickname"] = agent.nickname
        return view

    def _currency_item(self, agent: Identity) -> dict[str, Any]:
        account = self.state.books.accounts[agent.loginid]
        pa = account.payment_agent
        assert pa is not None
        return {
            "currency": account.currency,
            "deposit_commission": pa.commission_deposit,
            "withdrawal_commission": pa.commission_withdrawal,
            "withdrawal_minimum": format_amount(pa.min_withdrawal, account.currency),
            "withdrawal_maximum": format_amount(pa.max_withdrawal, account.currency),
        }

    # ---- payment agents: directory -------------------------------------------------------------------

    def agents(self, call: Call) -> Reply:
        q = call.request.query
        currency = q.get("currency")
        if not currency:
            raise Refusal(400, "InputError", "currency is required")
        try:
            page = int(q.get("page", "1"))
            per_page = int(q.get("per_page", "25"))
        except ValueError:
            raise Refusal(400, "InputError", "page and per_page must be integers") from None
        if page < 1 or per_page < 1:
            raise Refusal(400, "InputError", "page and per_page must be at least 1")
        found = []
        for ident in sorted(self.state.identities.values(), key=lambda i: i.agent_id or 0):
            account = self.state.books.accounts[ident.loginid]
            pa = account.payment_agent
            if (
                ident.agent_id is None
                or pa is None
                or pa.status != "authorized"
                or account.currency != currency
            ):
                continue
            if q.get("country") and q["country"] not in pa.countries:
                continue
            item = self._agent_view(ident, own=False)
            item.update({k: v for k, v in self._currency_item(ident).items() if k != "currency"})
            found.append(item)
        return self.ok(call.request, found[(page - 1) * per_page : page * per_page])

    def agent(self, call: Call) -> Reply:
        raw = call.params["id"]
        if raw == "me":
            if call.caller.agent_id is None:
                raise Refusal(404, "AgentNotFound", "No payment agent exists with the given id")
            agent = call.caller
        elif raw.isdigit():
            found = self.state.by_agent_id(int(raw))
            if found is None or self.state.books.accounts[found.loginid].payment_agent is None:
                raise Refusal(404, "AgentNotFound", "No payment agent exists with the given id")
            agent = found
        else:
            raise Refusal(400, "InvalidAgentID", "Agent ID must be numeric or the literal string 'me'")
        own = agent.loginid == call.caller.loginid
        view = self._agent_view(agent, own)
        view["currencies"] = [self._currency_item(agent)]
        if own:
            view["cashier_withdraw"] = True
            if self.config.generation == "newer":
                view.update(transfer_to_pa=False, deposit_enabled=agent.deposit_enabled,
                            withdraw_enabled=agent.withdraw_enabled)  # fmt: skip
        return self.ok(call.request, view)

    def statistics(self, call: Call) -> Reply:
        countries: set[str] = set()
        currencies: set[str] = set()
        for ident in self.state.identities.values():
            account = self.state.books.accounts[ident.loginid]
            if (
                ident.agent_id is not None
                and account.payment_agent
                and account.payment_agent.status == "authorized"
            ):
                countries.update(account.payment_agent.countries)
                currencies.add(account.currency)
        data = {"available_countries": sorted(countries), "available_currencies": sorted(currencies)}
        return self.ok(call.request, data)

    # ---- payment agents: transfer ---------------------------------------------------------------------

    def transfer(self, call: Call) -> Reply:
        data = call.data
        newer = self.config.generation == "newer"
        dry_run = newer and data.get("dry_run") is True
        rid = self._request_id("transfer", data)
        if not dry_run:
            self._check_unused("transfer", rid)
        books = self.state.books
        caller = call.caller
        account = books.accounts[caller.loginid]
        if caller.agent_id is None or account.payment_agent is None:
            raise Refusal(400, "AgentIDInvalid", "The caller is not a registered payment agent")
        self._active(caller)
        currency = self._currency(data)
        if currency != account.currency:
            raise Refusal(400, "AgentCurrencyUnsupported", "The agent does not support this currency")
        nickname = data.get("to_nickname")
        if nickname == caller.nickname:
            raise Refusal(400, "AgentSelfTransfer", "An agent cannot transfer funds to their own account")
        target = self.state.by_nickname(str(nickname))
        if target is None:
            raise Refusal(400, "NicknameNotFound", "to_nickname does not match any Deriv account")
        client = books.accounts[target.loginid]
        if client.currency != currency or client.is_virtual or client.disabled or not target.deposit_enabled:
            raise Refusal(400, "NoClientWallet", "The recipient account cannot receive the funds")
        if client.residence not in account.payment_agent.countries:
            raise Refusal(
                400, "ClientCountryUnsupported", "The recipient's country is not served by this agent"
            )
        minor = self._amount(data, currency)
        if account.balance < minor:
            raise Refusal(
                400,
                "WalletFundsInsufficient",
                "The agent's wallet does not hold enough funds for this transfer",
            )
        extra: dict[str, Any] = {}
        if newer:
            real_name = client.fullname if target.show_real_name else None
            extra = {"client_real_name": real_name, "client_is_agent": target.agent_id is not None}
        if dry_run:
            return self.ok(call.request, {"status": "dry_run_ok", "transaction_id": None, **extra})
        op = Operation(
            kind="transfer",
            request_id=rid or self._new_id("transfer"),
            source=caller.loginid,
            target=target.loginid,
            caller=caller.loginid,
            amount=minor,
            currency=currency,
            notes=str(data.get("notes") or ""),
            status="pending",
            created_at=call.now,
        )
        self.state.operations[("transfer", op.request_id)] = op
        fault = call.fault
        if newer and fault is not None and fault.kind == "pending":
            op.settle_at = call.now + fault.settle_after
            op.settle_to = fault.settle_to
        else:
            self.state.complete(op, int(call.now))
            if op.status != "complete":
                raise Refusal(500, "TransferFailed", "The transfer could not be completed")
        return self.ok(call.request, {"status": op.status, "transaction_id": op.transaction_id, **extra})

    def _status(self, call: Call, kind: str) -> Reply:
        rid = call.params["request_id"]
        if not REQUEST_ID_RE.match(rid):
            if kind == "withdraw":
                raise Refusal(400, "RequestIDNotFound", "No withdrawal found for the given request_id")
            raise Refusal(400, "InvalidRequestIDFormat", "request_id must be 1-128 letters, digits, _ or -")
        op = self.state.operations.get((kind, rid))
        if op is None or not op.visible_to(call.caller.loginid):
            noun = "withdrawal" if kind == "withdraw" else "transfer"
            raise Refusal(400, "RequestIDNotFound", f"No {noun} found for the given request_id")
        return self.ok(call.request, {"status": op.status, "transaction_id": op.transaction_id})

    def transfer_status(self, call: Call) -> Reply:
        return self._status(call, "transfer")

    def withdraw_status(self, call: Call) -> Reply:
        return self._status(call, "withdraw")

    # ---- payment agents: withdrawal --------------------------------------------------------------------

    def _agent_checks(self, client: Identity, data: dict[str, Any]) -> tuple[Identity, str]:
        agent = self._agent(data.get("agent_id"))
        self._active(agent)
        if agent.loginid == client.loginid:
            raise Refusal(400, "AgentSelfWithdraw", "You cannot withdraw through your own payment agent")
        currency = self._currency(data)
        if self.state.books.accounts[agent.loginid].currency != currency:
            raise Refusal(400, "AgentCurrencyUnsupported", "The agent does not support this currency")
        return agent, currency

    def verification_code(self, call: Call) -> Reply:
        data = call.data
        client = call.caller
        agent, currency = self._agent_checks(client, data)
        minor = self._amount(data, currency)
        now = int(call.now)
        otp = self.state.otp.setdefault(client.loginid, OtpState())
        if now < otp.next_request_at:
            raise Refusal(
                400, "OtpRateLimitExceeded", "Too many OTP requests. Please try again later.",
                next_request_at=otp.next_request_at,
            )  # fmt: skip
        account = self.state.books.accounts[client.loginid]
        for mail in self.state.books.mailbox:
            if mail.status == "active" and mail.type == OTP_MAIL_TYPE and mail.loginid == client.loginid:
                mail.status = "superseded"
        mail = VerificationMail(
            code=self.state.six_digits(),
            email=account.email,
            type=OTP_MAIL_TYPE,
            loginid=client.loginid,
            issued_at=now,
            expires_at=now + OTP_TTL_SECONDS,
            url_parameters={"agent_id": agent.agent_id, "amount": minor, "currency": currency},
        )
        self.state.books.mailbox.append(mail)
        otp.mail = mail
        otp.next_request_at = now + OTP_RESEND_SECONDS
        message = "Please check your email or phone for the verification code."
        return self.ok(
            call.request,
            {"message": message, "next_request_at": otp.next_request_at, "expires_at": mail.expires_at},
        )

    def withdraw(self, call: Call) -> Reply:
        data = call.data
        client = call.caller
        code = data.get("verification_code")
        if not isinstance(code, str) or not CODE_RE.match(code):
            raise Refusal(400, "VerificationCodeFormatInvalid", "verification_code must be 6 digits")
        rid = self._request_id("withdraw", data)
        self._check_unused("withdraw", rid)
        if not client.withdraw_enabled:
            raise Refusal(
                400, "InputError", "Withdrawals through payment agents are disabled for this account"
            )
        now = int(call.now)
        otp = self.state.otp.setdefault(client.loginid, OtpState())
        if now < otp.locked_until:
            raise Refusal(
                400, "OtpValidationRateLimitExceeded",
                "Too many failed OTP validation attempts. Please try after some time.",
            )  # fmt: skip
        agent, currency = self._agent_checks(client, data)
        minor = self._amount(data, currency)
        mail = otp.mail
        wanted = {"agent_id": agent.agent_id, "amount": minor, "currency": currency}
        if (
            mail is None
            or mail.state(call.now) != "active"
            or mail.code != code
            or mail.url_parameters != wanted
        ):
            otp.failures += 1
            if otp.failures >= OTP_MAX_FAILURES:
                otp.failures = 0
                otp.locked_until = now + OTP_LOCK_SECONDS
            raise Refusal(400, "InvalidOTP", "Invalid OTP")
        mail.status = "used"
        otp.failures = 0
        books = self.state.books
        account = books.accounts[client.loginid]
        agent_account = books.accounts[agent.loginid]
        assert agent_account.payment_agent is not None
        if account.currency != currency or account.is_virtual:
            raise Refusal(400, "NoClientWallet", "The client has no wallet in this currency")
        if account.residence not in agent_account.payment_agent.countries:
            raise Refusal(400, "ClientCountryUnsupported", "The client's country is not served by this agent")
        if minor < agent_account.payment_agent.min_withdrawal:
            raise Refusal(
                400, "WithdrawalAmountMinimum", "Amount is below the agent's minimum withdrawal limit"
            )
        if minor > agent_account.payment_agent.max_withdrawal:
            raise Refusal(
                400, "WithdrawalAmountMaximum", "Amount is above the agent's maximum withdrawal limit"
            )
        if account.balance < minor:
            raise Refusal(400, "WalletFundsInsufficient", "The client's wallet does not hold enough funds")
        op = Operation(
            kind="withdraw",
            request_id=rid or self._new_id("withdraw"),
            source=client.loginid,
            target=agent.loginid,
            caller=client.loginid,
            amount=minor,
            currency=currency,
            notes=str(data.get("notes") or ""),
            status="pending",
            settle_at=call.now + self.config.withdraw_settle_after,
            created_at=call.now,
        )
        fault = call.fault
        if fault is not None and fault.kind == "pending":
            op.settle_at = call.now + fault.settle_after
            op.settle_to = fault.settle_to
        self.state.operations[("withdraw", op.request_id)] = op
        return self.ok(call.request, {"status": "pending", "transaction_id": None})

    # ---- client settings, wallets, identity ------------------------------------------------------------

    def clients_me(self, call: Call) -> Reply:
        return self.ok(call.request, call.caller.settings())

    def clients_me_patch(self, call: Call) -> Reply:
        value = call.data.get("show_real_name")
        if not isinstance(value, bool):
            raise Refusal(400, "InputError", "show_real_name must be a boolean")
        call.caller.show_real_name = value
        return self.ok(call.request, call.caller.settings())

    def wallets(self, call: Call) -> Reply:
        loginid = call.caller.loginid
        account = self.state.books.accounts[loginid]
        entries = self.state.books.statement(loginid)
        into = sum(e.amount for e in entries if e.amount > 0)
        out = -sum(e.amount for e in entries if e.amount < 0)
        cur = account.currency
        wallet = {
            "wallet_id": self.state.wallet_id(loginid),
            "type": self.state.wallet_type(loginid),
            "balances": {
                cur: {
                    "balance": format_amount(account.balance, cur),
                    "input": format_amount(into, cur),
                    "output": format_amount(out, cur),
                }
            },
        }
        return Reply(200, {"data": [wallet]})

    def transactions(self, call: Call) -> Reply:
        """The wallet's transactions, newest first, cursor-paged (`links.next` is followed verbatim).

        One item per move of the wallet's money (the Books ledger both APIs share, so a v3 transfer
        is listed too, with its v3 transaction id) plus the REST operations that moved nothing yet or
        never will: `pending` (transaction_id null), `failed` / `rejected`. A reverted operation's
        own item reads `reverted`; the move back is an item of its own (`complete`).
        """
        q = dict(call.request.query)
        wallet_type = call.params["wallet_type"]
        if wallet_type not in ("main", "p2p", "partner", "payment_agent"):
            raise Refusal(400, "ValidationError", "wallet_type must be main, p2p, partner or payment_agent")
        offset = 0
        if "page_cursor" in q:
            try:
                cursor = json.loads(base64.urlsafe_b64decode(q["page_cursor"].encode()))
                offset = int(cursor["offset"])
                q = {k: str(v) for k, v in cursor["query"].items()}
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise Refusal(400, "ValidationError", "page_cursor is not valid") from None
        try:
            per_page = int(q.get("per_page", "100"))
        except ValueError:
            raise Refusal(400, "ValidationError", "per_page must be an integer") from None
        if not 100 <= per_page <= 1000:
            raise Refusal(400, "ValidationError", "per_page must be within 100..1000")
        since = _moment(q.get("start_date_time"), "start_date_time")
        until = _moment(q.get("end_date_time"), "end_date_time")
        currency = q.get("transaction_currency")
        if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
            raise Refusal(400, "ValidationError", "transaction_currency must be ^[A-Z]{3}$")
        loginid = call.caller.loginid
        items: list[tuple[float, int, dict[str, Any]]] = []
        if self.state.wallet_type(loginid) == wallet_type:
            items = self._wallet_items(loginid)
        chosen = [
            item
            for at, _, item in sorted(items, key=lambda t: (t[0], t[1]), reverse=True)
            if ("request_id" not in q or item["request_id"] == q["request_id"])
            and (currency is None or item["metadata"]["transaction_currency"] == currency)
            and (since is None or at >= since)
            and (until is None or at <= until)
        ]
        page = chosen[offset : offset + per_page]
        path = call.request.path

        def link(at: int) -> str:
            cursor = base64.urlsafe_b64encode(json.dumps({"offset": at, "query": q}).encode()).decode()
            return f"{path}?{urlencode({'page_cursor': cursor})}"

        body: dict[str, Any] = {
            "data": {
                "start_date_time": _iso(since) if since is not None else None,
                "end_date_time": _iso(until) if until is not None else None,
                "transactions": page,
            }
        }
        if not self.config.omit_links:  # the live API has been seen leaving `links` out (anchors §11)
            body["links"] = {
                "self": link(offset),
                "first": link(0),
                "next": link(offset + per_page) if offset + per_page < len(chosen) else None,
                "prev": link(max(0, offset - per_page)) if offset > 0 else None,
            }
        return Reply(200, body)

    def _wallet_items(self, loginid: str) -> list[tuple[float, int, dict[str, Any]]]:
        """(time, order, item) of every transaction of the wallet of `loginid`."""
        books = self.state.books
        by_transfer = {t.transfer_id: t for t in books.transfers}
        found: list[tuple[float, int, dict[str, Any]]] = []
        for entry in books.statement(loginid):
            ref = entry.reference_id if entry.reference_id is not None else -1
            op = self.state.moves.get(ref)
            status = "complete"
            if op is not None and op.status == "reverted" and ref != op.reversal_id:
                status = "reverted"
            transfer = by_transfer.get(ref)
            other = None
            if transfer is not None:
                other = transfer.from_loginid if entry.amount > 0 else transfer.to_loginid
            item = _wallet_item(
                self.state.request_ids.get(ref, ""),
                entry.transaction_id,
                float(entry.time),
                "deposit" if entry.amount > 0 else "withdrawal",
                "payment_agent" if transfer is not None else "cashier",
                status,
                abs(entry.amount),
                entry.currency,
                other,
            )
            found.append((float(entry.time), entry.transaction_id, item))
        for op in self.state.operations.values():
            if op.status not in ("pending", "failed", "rejected") or not op.visible_to(loginid):
                continue
            incoming = op.target == loginid
            item = _wallet_item(
                op.request_id,
                None,
                op.created_at,
                "deposit" if incoming else "withdrawal",
                "payment_agent",
                op.status,
                op.amount,
                op.currency,
                op.source if incoming else op.target,
            )
            found.append((op.created_at, 0, item))
        return found

    def nickname(self, call: Call) -> Reply:
        ref = self.state.wallet_id(f"identity:{call.caller.loginid}")
        return self.ok(call.request, {"external_reference_id": ref, "nickname": call.caller.nickname})

    # ---- OAuth2 (authorization code + PKCE) --------------------------------------------------------------

    def authorize(self, query: dict[str, str], now: float) -> Reply:
        """GET /oauth2/auth: the simulator consents at once as `sim_login` (a nickname) or the default."""
        redirect = query.get("redirect_uri", "")
        if not query.get("client_id") or not redirect:
            return Reply(400, {"error": "invalid_request", "error_description": "client_id and redirect_uri"})
        state = query.get("state", "")

        def back(params: dict[str, str]) -> Reply:
            sep = "&" if "?" in redirect else "?"
            return Reply(302, None, headers={"Location": f"{redirect}{sep}{urlencode(params)}"})

        if query.get("response_type") != "code":
            return back({"error": "unsupported_response_type", "state": state})
        challenge = query.get("code_challenge", "")
        if query.get("code_challenge_method") != "S256" or not challenge:
            return back(
                {"error": "invalid_request", "error_description": "PKCE S256 required", "state": state}
            )
        scopes = tuple(s for s in query.get("scope", "").split() if s)
        if not scopes or set(scopes) - {"payment", "trade", "account_manage", "application_read"}:
            return back({"error": "invalid_scope", "state": state})
        user = self.state.by_nickname(query.get("sim_login") or self.config.default_oauth_login)
        if user is None:
            return back({"error": "access_denied", "error_description": "no such user", "state": state})
        code = self.state.secret("ory_ac_")
        self.state.auth_codes[code] = AuthCode(
            code, query["client_id"], redirect, scopes, user.loginid, challenge, now + AUTH_CODE_TTL
        )
        return back({"code": code, "state": state})

    def token(self, form: dict[str, str], now: float) -> Reply:
        """POST /oauth2/token (form-encoded): authorization_code with code_verifier, or refresh_token."""

        def fail(error: str, text: str) -> Reply:
            return Reply(400, {"error": error, "error_description": text})

        grant = form.get("grant_type")
        if grant == "authorization_code":
            auth = self.state.auth_codes.get(form.get("code", ""))
            if auth is None or auth.used or now >= auth.expires_at:
                return fail("invalid_grant", "the code is unknown, used or expired")
            auth.used = True  # single use, whatever follows
            if form.get("client_id") != auth.client_id:
                return fail("invalid_client", "client_id does not match")
            if form.get("redirect_uri") != auth.redirect_uri:
                return fail("invalid_grant", "redirect_uri does not match")
            verifier = form.get("code_verifier", "")
            digest = (
                base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            )
            if not 43 <= len(verifier) <= 128 or digest != auth.challenge:
                return fail("invalid_grant", "code_verifier does not match the challenge")
            return Reply(200, self._issue(auth.loginid, auth.scopes, auth.client_id, now))
        if grant == "refresh_token":
            old = self.state.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if old is None or form.get("client_id") != old.kind.partition(":")[2]:
                return fail("invalid_grant", "the refresh token is unknown or used")
            return Reply(200, self._issue(old.loginid, old.scopes, old.kind.partition(":")[2], now))
        return fail("unsupported_grant_type", "authorization_code or refresh_token")

    def _issue(self, loginid: str, scopes: tuple[str, ...], client_id: str, now: float) -> dict[str, Any]:
        access = BearerToken(self.state.secret("ory_at_"), loginid, scopes, "oauth", now + ACCESS_TOKEN_TTL)
        self.state.tokens[access.token] = access
        body: dict[str, Any] = {
            "access_token": access.token,
            "expires_in": ACCESS_TOKEN_TTL,
            "token_type": "Bearer",
            "scope": " ".join(scopes),
        }
        if self.config.issue_refresh_tokens:
            refresh = BearerToken(self.state.secret("ory_rt_"), loginid, scopes, f"refresh:{client_id}")
            self.state.refresh_tokens[refresh.token] = refresh
            body["refresh_token"] = refresh.token
        return body

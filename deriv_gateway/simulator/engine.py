"""The pure request -> reply logic: envelope, Deriv's pre-dispatch check order, sessions and streams.

No sockets here. The I/O layer (server.py) parses frames, asks `Session.handle` for an `Outcome`, applies
faults and timing, sends, then calls `Engine.flush()` so balance/transaction stream updates caused by the
request go out after its reply.

Check order (binary-websocket-api Hooks::before_forward): RateLimit, (sanity filter), InputValidationFailed,
AuthorizationRequired, PermissionDenied; then the call itself.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .accounts import DEFAULT_SEED, Account, Token
from .books import Books, first_transaction_id
from .clock import Clock
from .config import SimulatorConfig
from .errors import ApiError
from .money import to_number
from .ratelimit import CONNECTION_CALLS, RateLimiter
from .validation import SPECS, CallSpec, sane, validate, validation_error

NOT_SHOWN = "<not shown>"


@dataclass
class Subscription:
    id: str
    type: str  # balance | transaction | website_status
    loginid: str | None
    all_accounts: bool
    echo_req: dict[str, Any]
    req_id: int | None
    passthrough: dict[str, Any] | None


@dataclass
class Outcome:
    """What to send for one request. `close` is a WebSocket close (code, reason) to perform after it."""

    call: str | None
    reply: dict[str, Any] | None
    close: tuple[int, str] | None = None


@dataclass
class Push:
    session: Session
    stream: str
    loginid: str
    message: dict[str, Any]


@dataclass
class Ctx:
    """What a call handler sees."""

    engine: Engine
    session: Session
    call: str
    args: dict[str, Any]
    account: Account | None
    token: Token | None
    now: int

    @property
    def books(self) -> Books:
        return self.engine.books


Handler = Callable[[Ctx], dict[str, Any]]


def _req_id(request: dict[str, Any]) -> int | None:
    value = request.get("req_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _passthrough(request: dict[str, Any]) -> dict[str, Any] | None:
    value = request.get("passthrough")
    return value if isinstance(value, dict) else None


def redact(spec: CallSpec | None, request: dict[str, Any]) -> dict[str, Any]:
    echo = copy.deepcopy(request)
    if spec is not None:
        for key in spec.sensitive:
            if key in echo:
                echo[key] = NOT_SHOWN
    return echo


def envelope(
    msg_type: str,
    request: dict[str, Any],
    payload: dict[str, Any],
    echo_req: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "echo_req": echo_req if echo_req is not None else request,
        "msg_type": msg_type,
    }
    message.update(payload)
    req_id = _req_id(request)
    if req_id is not None:
        message["req_id"] = req_id
    passthrough = _passthrough(request)
    if passthrough is not None:
        message["passthrough"] = passthrough
    return message


def error_message(
    msg_type: str,
    request: Any,
    code: str,
    text: str,
    details: dict[str, Any] | None = None,
    echo_req: dict[str, Any] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": text}
    if details:
        error["details"] = details
    req = request if isinstance(request, dict) else {}
    return envelope(msg_type, req, {"error": error}, echo_req=echo_req if echo_req is not None else req)


def find_call(request: dict[str, Any]) -> str | None:
    for key in request:
        if key in SPECS:
            return key
    return None


class Session:
    """One WebSocket connection's protocol state."""

    def __init__(self, engine: Engine, session_id: int, app_id: int) -> None:
        self.engine = engine
        self.id = session_id
        self.app_id = app_id
        self.loginid: str | None = None
        self.tokens: dict[str, Token] = {}  # loginid -> token, for authorize + extra tokens
        self.subscriptions: dict[str, Subscription] = {}
        # set by the I/O layer: receives stream pushes for this connection
        self.sink: Callable[[Push], None] | None = None

    # ---- auth ----------------------------------------------------------------------------------------

    def bind(self, main: Token, extra: list[Token]) -> None:
        self.loginid = main.loginid
        self.tokens = {t.loginid: t for t in [*extra, main]}

    def unbind(self) -> None:
        self.loginid = None
        self.tokens.clear()
        for sub_id in [s.id for s in self.subscriptions.values() if s.type in ("balance", "transaction")]:
            del self.subscriptions[sub_id]

    def subscribe(
        self,
        type_: str,
        request: dict[str, Any],
        loginid: str | None,
        all_accounts: bool = False,
        already: str | None = None,
    ) -> Subscription:
        for sub in self.subscriptions.values():
            if sub.type == type_ and sub.loginid == loginid and sub.all_accounts == all_accounts:
                raise ApiError("AlreadySubscribed", already or f"You are already subscribed to {type_}.")
        sub = Subscription(
            id=self.engine.books.ids.uuid(),
            type=type_,
            loginid=loginid,
            all_accounts=all_accounts,
            echo_req=copy.deepcopy(request),
            req_id=_req_id(request),
            passthrough=_passthrough(request),
        )
        self.subscriptions[sub.id] = sub
        return sub

    # ---- dispatch ------------------------------------------------------------------------------------

    def handle(self, request: Any) -> Outcome:
        engine = self.engine
        if not isinstance(request, dict):
            return Outcome(
                None, error_message("error", {}, "BadRequest", "The application sent an invalid request.")
            )
        call = find_call(request)
        if call is None:
            return Outcome(
                None, error_message("error", request, "UnrecognisedRequest", "Unrecognised request")
            )
        spec = SPECS[call]

        # 1. rate limit
        if not engine.limiter.check(call, self.id, self.loginid):
            reply = error_message(
                call,
                request,
                "RateLimit",
                f"You have reached the rate limit for {call}.",
                echo_req=redact(spec, request),
            )
            close = (1008, "Policy Violation") if call in CONNECTION_CALLS else None
            return Outcome(call, reply, close)
        # sanity filter
        if not sane(request):
            text = "Parameters sanity check failed."
            return Outcome(
                call, error_message(call, request, "SanityCheckFailed", text, echo_req=redact(spec, request))
            )
        # 2. schema validation (the raw request is echoed unredacted)
        errors = validate(spec, request)
        if errors:
            text, details = validation_error(errors)
            return Outcome(call, error_message(call, request, "InputValidationFailed", text, details))
        echo = redact(spec, request)
        # 3. authorization
        account: Account | None = None
        token: Token | None = None
        if spec.auth_required:
            wanted = request.get("loginid", self.loginid)
            wanted = wanted.upper() if isinstance(wanted, str) else None
            token = self.tokens.get(wanted) if wanted else None
            account = engine.books.account(wanted) if wanted else None
            if token is None or account is None:
                return Outcome(
                    call,
                    error_message(call, request, "AuthorizationRequired", "Please log in.", echo_req=echo),
                )
            # 4. scopes: any one of them
            if spec.scopes and not set(spec.scopes) & set(token.scopes):
                text = f"Permission denied, requires {', '.join(spec.scopes)} scope(s)."
                return Outcome(call, error_message(call, request, "PermissionDenied", text, echo_req=echo))
        elif self.loginid:
            token = self.tokens.get(self.loginid)
            account = engine.books.account(self.loginid)
        # 5. the call
        ctx = Ctx(engine, self, call, request, account, token, engine.clock.epoch())
        handler = engine.handlers[call]
        try:
            payload = handler(ctx)
        except ApiError as exc:
            return Outcome(
                call, error_message(call, request, exc.code, exc.message, exc.details, echo_req=echo)
            )
        return Outcome(call, envelope(call, request, payload, echo_req=echo))

    def timeout_reply(self, request: dict[str, Any]) -> dict[str, Any]:
        call = find_call(request) if isinstance(request, dict) else None
        spec = SPECS.get(call) if call else None
        return error_message("error", request, "Timeout", "Timeout", echo_req=redact(spec, request))

    def rate_limit_reply(self, request: dict[str, Any]) -> dict[str, Any]:
        call = find_call(request)
        spec = SPECS.get(call) if call else None
        text = f"You have reached the rate limit for {call}."
        return error_message(call or "error", request, "RateLimit", text, echo_req=redact(spec, request))


class Engine:
    """Shared state for all connections: books, clock, rate limits, handlers."""

    def __init__(self, config: SimulatorConfig, clock: Clock | None = None) -> None:
        from .handlers import HANDLERS

        self.config = config
        self.clock = clock or Clock()
        self.handlers: dict[str, Handler] = dict(HANDLERS)
        self.seed_data = self._seed_data(config)
        self.books = Books(config.seed, self.seed_data, self._first_txn())
        self.limiter = RateLimiter(config.rate_limits)
        self.sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)

    def _first_txn(self) -> int:
        if self.config.transaction_id_start is not None:
            return self.config.transaction_id_start
        # real time, not the simulated clock the control API moves: ids must not go back
        return first_transaction_id(self.config.seed, time.time())

    @staticmethod
    def _seed_data(config: SimulatorConfig) -> dict[str, Any]:
        if config.accounts is not None:
            return copy.deepcopy(config.accounts)
        if config.accounts_file is not None:
            import json

            return dict(json.loads(config.accounts_file.read_text()))
        return copy.deepcopy(DEFAULT_SEED)

    def open_session(self, app_id: int) -> Session:
        session = Session(self, next(self._ids), app_id)
        self.sessions[session.id] = session
        return session

    def close_session(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        self.limiter.windows.forget(("conn", session.id))

    def reset(self) -> None:
        """Back to the seed: fresh books (same seed, so the same ids), no rate-limit history.

        Transaction ids restart at an explicit `transaction_id_start`; otherwise they carry on from
        where they were, so a reset never hands out an id of this run twice.
        """
        carry_on = self.books.next_transaction_id
        first = self._first_txn()
        if self.config.transaction_id_start is None:
            first = max(first, carry_on)
        self.books = Books(self.config.seed, self.seed_data, first)
        self.limiter.windows.clear()
        self.limiter.refused.clear()
        self.clock.reset()
        for session in self.sessions.values():
            session.loginid = None
            session.tokens.clear()
            session.subscriptions.clear()

    # ---- streams -------------------------------------------------------------------------------------

    def drain(self) -> list[Push]:
        events, self.books.events = self.books.events, []
        pushes: list[Push] = []
        for event in events:
            entry = event.entry
            account = self.books.account(event.loginid)
            if account is None:
                continue
            for session in list(self.sessions.values()):
                for sub in list(session.subscriptions.values()):
                    if sub.type == "balance" and (
                        sub.loginid == event.loginid
                        or (sub.all_accounts and sub.loginid and _same_user(self.books, sub.loginid, account))
                    ):
                        payload = {
                            "balance": {
                                "balance": to_number(entry.balance_after, entry.currency),
                                "currency": entry.currency,
                                "id": sub.id,
                                "loginid": event.loginid,
                            },
                            "subscription": {"id": sub.id},
                        }
                    elif sub.type == "transaction" and sub.loginid == event.loginid:
                        payload = {
                            "transaction": {
                                "action": entry.action_type,
                                "amount": to_number(entry.amount, entry.currency),
                                "balance": to_number(entry.balance_after, entry.currency),
                                "currency": entry.currency,
                                "id": sub.id,
                                "longcode": entry.longcode,
                                "transaction_id": entry.transaction_id,
                                "transaction_time": entry.time,
                            },
                            "subscription": {"id": sub.id},
                        }
                    else:
                        continue
                    message: dict[str, Any] = {"echo_req": sub.echo_req, "msg_type": sub.type, **payload}
                    if sub.req_id is not None:
                        message["req_id"] = sub.req_id
                    if sub.passthrough is not None:
                        message["passthrough"] = sub.passthrough
                    pushes.append(Push(session, sub.type, event.loginid, message))
        return pushes

    def flush(self) -> None:
        """Hand pending stream updates to each connection's sink."""
        for push in self.drain():
            if push.session.sink is not None:
                push.session.sink(push)


def _same_user(books: Books, loginid: str, account: Account) -> bool:
    owner = books.account(loginid)
    return owner is not None and owner.user_id == account.user_id


__all__ = [
    "Ctx",
    "Engine",
    "Handler",
    "Outcome",
    "Push",
    "Session",
    "Subscription",
    "envelope",
    "error_message",
    "find_call",
]

"""The aiohttp callback endpoints: authentication, allow-list, size limit, strict parsing; then the inbox.

Routes (routes.PATHS): POST /payments/stk/{token}, /payments/b2c/result/{token},
/payments/b2c/timeout/{token}, /payments/status/result/{token}, /payments/status/timeout/{token},
/payments/balance/{result,timeout}/{token}; with a paybill use case, the C2B validation and
confirmation URLs /payments/paybill/{validate,confirm}/{token} (mpesa_adapter/c2b.py); with a refunds
use case, a suspense refund's Reversal result, queue timeout and Transaction Status answer
/payments/paybill/refund/{result,timeout,status}/{token} (mpesa_adapter/reversal.py).

Order of checks, cheapest first; every refusal is recorded for review through the inbox (raw body as
evidence) and nothing is credited:
  1. the secret path token, compared in constant time        -> 404 (reveals nothing)
  2. the client address against the allow-list               -> 403 (or log-only, see config)
     (X-Forwarded-For is believed only when the peer is a configured trusted proxy)
  3. the body size limit                                     -> 413
  4. strict JSON and the callback's shape                    -> 400
Then the typed callback goes to the `CallbackInbox`, and the answer is always the same 200
`{"ResultCode": 0, "ResultDesc": "Accepted"}`, whether it was new, a duplicate, unknown or mismatching
(a C2B validation gets PenPay's decision instead, a confirmation Daraja's "Success").
The access log never shows the path token.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from domain.shared.clock import Clock
from mpesa_adapter import c2b, reversal
from mpesa_adapter import callback_parsing as parsing
from mpesa_adapter.config import CallbackServerConfig, IpNetwork
from mpesa_adapter.inbox import CallbackInbox, Delivery, Outcome, Rejection, ReviewReason
from mpesa_adapter.routes import PATHS, CallbackKind
from security.http_edge import ProblemJsonRunner
from security.proxies import TrustedProxies

log = logging.getLogger("penpay.mpesa.callbacks")

ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}
# An Outcome is answered with ACCEPTED; a dict is the answer itself (C2B).
_Handler = Callable[[dict[str, Any], bytes, Delivery], Awaitable[Outcome | dict[str, Any]]]


SECRET_MIN_LENGTH = 16


def redacted_path(path: str) -> str:
    """The path without the secret: under a callback prefix everything after it; elsewhere (the secret sent
    to a wrong path, e.g. `/payments//stk/<secret>`) every segment long enough to be or hold the secret."""
    for prefix in PATHS.values():
        if path.startswith(prefix + "/"):
            return prefix + "/***"
    return "/".join("***" if len(part) >= SECRET_MIN_LENGTH else part for part in path.split("/"))


class RedactingAccessLogger(AbstractAccessLogger):
    """Access log lines without the secret path segment."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.1fms",
            request.remote,
            request.method,
            redacted_path(request.path),
            response.status,
            time * 1000,
        )


def client_address(peer: str | None, forwarded_for: str | None, trusted: tuple[IpNetwork, ...]) -> str | None:
    """The caller's address: the peer, unless it is a trusted proxy (security/proxies.py)."""
    return TrustedProxies(trusted).client_address(peer, forwarded_for)


def _in(address: str, networks: tuple[IpNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


class CallbackEndpoints:
    def __init__(
        self,
        config: CallbackServerConfig,
        inbox: CallbackInbox,
        paybill: c2b.Paybill | None = None,
        refunds: reversal.ReversalResults | None = None,
        *,
        clock: Clock,
    ) -> None:
        if len(config.secret) < SECRET_MIN_LENGTH:
            raise ValueError("the callback secret must be at least 16 characters (128 bits recommended)")
        self._cfg = config
        self._inbox = inbox
        self._clock = clock  # stamps each delivery's arrival
        self._secret = config.secret.encode()
        self._handlers: dict[CallbackKind, _Handler] = {
            CallbackKind.STK: self._stk,
            CallbackKind.B2C_RESULT: self._b2c_result,
            CallbackKind.B2C_TIMEOUT: self._b2c_timeout,
            CallbackKind.STATUS_RESULT: self._status_result,
            CallbackKind.STATUS_TIMEOUT: self._ack_only,
            CallbackKind.BALANCE_RESULT: self._balance_result,
            CallbackKind.BALANCE_TIMEOUT: self._ack_only,
        }
        self._paybill = paybill
        if paybill is not None:
            self._handlers[CallbackKind.C2B_VALIDATION] = self._c2b_validation
            self._handlers[CallbackKind.C2B_CONFIRMATION] = self._c2b_confirmation
        self._refunds = refunds
        if refunds is not None:
            self._handlers[CallbackKind.REVERSAL_RESULT] = self._reversal_result
            self._handlers[CallbackKind.REVERSAL_TIMEOUT] = self._reversal_timeout
            self._handlers[CallbackKind.REVERSAL_STATUS] = self._reversal_status

    def app(self) -> web.Application:
        # client_max_size: aiohttp refuses a bigger body with 413 before it is buffered.
        application = web.Application(client_max_size=self._cfg.max_body_bytes)
        for kind, path in PATHS.items():
            if kind in self._handlers:
                application.router.add_post(path + "/{token}", self._endpoint(kind))
        return application

    def _endpoint(self, kind: CallbackKind) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(kind, request)

        return handle

    async def _handle(self, kind: CallbackKind, request: web.Request) -> web.StreamResponse:
        remote = client_address(
            request.remote,
            ", ".join(request.headers.getall("X-Forwarded-For", ())),
            self._cfg.trusted_proxies,
        )
        delivery = Delivery(remote, self._clock.now())
        raw = await self._read(request)
        if raw is None:
            log.warning(
                "mpesa callback %s from %s: body over %d bytes", kind, remote, self._cfg.max_body_bytes
            )
            return web.json_response({"error": "body too large"}, status=413)

        token = request.match_info.get("token", "").encode()
        if not hmac.compare_digest(token, self._secret):
            await self._reject(kind, ReviewReason.BAD_PATH_SECRET, "wrong path token", raw, delivery)
            return web.json_response({"error": "not found"}, status=404)

        if self._cfg.allowed_ips and not _in(remote or "", self._cfg.allowed_ips):
            await self._reject(
                kind, ReviewReason.IP_NOT_ALLOWED, f"caller {remote} not allowed", raw, delivery
            )
            if self._cfg.enforce_allowlist:
                return web.json_response({"error": "forbidden"}, status=403)
            log.warning("mpesa callback %s from %s outside the allow-list (log-only mode)", kind, remote)

        try:
            data = parsing.strict_json(raw)
            outcome = await self._handlers[kind](data, raw, delivery)
        except parsing.MalformedCallback as exc:
            await self._reject(kind, ReviewReason.MALFORMED, str(exc), raw, delivery)
            return web.json_response({"error": "malformed callback"}, status=400)
        if isinstance(outcome, dict):
            log.info("mpesa callback %s from %s: %s", kind, remote, outcome.get("ResultCode"))
            return web.json_response(outcome)
        log.info("mpesa callback %s from %s: %s", kind, remote, outcome)
        return web.json_response(ACCEPTED)

    async def _read(self, request: web.Request) -> bytes | None:
        if request.content_length is not None and request.content_length > self._cfg.max_body_bytes:
            return None
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return None

    async def _reject(
        self, kind: CallbackKind, reason: ReviewReason, detail: str, raw: bytes, delivery: Delivery
    ) -> None:
        await self._inbox.record_rejected(Rejection(kind, reason, detail, raw, delivery))

    async def _stk(self, data: dict[str, Any], raw: bytes, delivery: Delivery) -> Outcome:
        return await self._inbox.record_stk_callback(parsing.parse_stk_callback(data, raw), delivery)

    async def _b2c_result(self, data: dict[str, Any], raw: bytes, delivery: Delivery) -> Outcome:
        return await self._inbox.record_b2c_result(parsing.parse_b2c_result(data, raw), delivery)

    async def _b2c_timeout(self, data: dict[str, Any], raw: bytes, delivery: Delivery) -> Outcome:
        return await self._inbox.record_b2c_timeout(parsing.parse_b2c_timeout(data, raw), delivery)

    async def _status_result(self, data: dict[str, Any], raw: bytes, delivery: Delivery) -> Outcome:
        return await self._inbox.record_status_result(parsing.parse_status_result(data, raw), delivery)

    async def _balance_result(self, data: dict[str, Any], raw: bytes, delivery: Delivery) -> Outcome:
        envelope = parsing.parse_result(data, raw, require_ocid=False)
        return await self._inbox.record_balance_result(envelope, delivery)

    async def _c2b_validation(self, data: dict[str, Any], raw: bytes, delivery: Delivery) -> dict[str, Any]:
        assert self._paybill is not None
        return await c2b.validation(self._paybill, parsing.parse_c2b(data, raw))

    async def _c2b_confirmation(self, data: dict[str, Any], raw: bytes, delivery: Delivery) -> dict[str, Any]:
        assert self._paybill is not None
        settled = await c2b.confirmation(self._paybill, parsing.parse_c2b(data, raw))
        log.info("paybill confirmation from %s: %s", delivery.remote_addr, settled.outcome)
        return c2b.CONFIRMED

    async def _reversal_result(self, data: dict[str, Any], raw: bytes, delivery: Delivery) -> dict[str, Any]:
        assert self._refunds is not None
        outcome = await self._refunds.record(reversal.from_result(parsing.parse_result(data, raw)))
        return reversal.acknowledged(outcome)

    async def _reversal_timeout(self, data: dict[str, Any], raw: bytes, delivery: Delivery) -> dict[str, Any]:
        assert self._refunds is not None
        envelope = parsing.parse_result(data, raw)
        outcome = await self._refunds.record(reversal.from_result(envelope, timeout=True))
        return reversal.acknowledged(outcome)

    async def _reversal_status(self, data: dict[str, Any], raw: bytes, delivery: Delivery) -> dict[str, Any]:
        assert self._refunds is not None
        outcome = await self._refunds.record(reversal.from_status(parsing.parse_status_result(data, raw)))
        return reversal.acknowledged(outcome)

    async def _ack_only(self, data: dict[str, Any], raw: bytes, delivery: Delivery) -> Outcome:
        # Status-query and balance timeouts settle nothing; the shape is still checked.
        envelope = parsing.parse_result(data, raw, require_ocid=False)
        log.info(
            "mpesa result (no action) result_code=%s conversation_id=%s",
            envelope.result_code,
            envelope.conversation_id,
        )
        return Outcome.STATUS_RECORDED


class CallbackServer:
    """The endpoints on their own listening socket (tests, `penpay serve`)."""

    def __init__(
        self,
        config: CallbackServerConfig,
        inbox: CallbackInbox,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_routes: Sequence[web.RouteDef] = (),
        paybill: c2b.Paybill | None = None,
        refunds: reversal.ReversalResults | None = None,
        *,
        clock: Clock,
    ):
        self._endpoints = CallbackEndpoints(config, inbox, paybill, refunds, clock=clock)
        self._extra_routes = list(extra_routes)  # other providers' callbacks (SMS delivery reports)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("callback server not started")
        return f"http://{self._host}:{self.port}"

    async def start(self) -> None:
        app = self._endpoints.app()
        app.router.add_routes(self._extra_routes)
        # ProblemJsonRunner: an over-large head gets 431 problem JSON, its content neither echoed nor logged
        self._runner = ProblemJsonRunner(app, access_log_class=RedactingAccessLogger)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

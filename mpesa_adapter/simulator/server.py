"""The aiohttp application: Daraja's API routes, the control API, and `DarajaSimulator` to embed it."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from types import TracebackType
from typing import Any

from aiohttp import web

from mpesa_adapter.simulator import b2c, c2b, errors, reports, reversal, stk, validation
from mpesa_adapter.simulator.config import SimulatorConfig
from mpesa_adapter.simulator.control import add_control_routes
from mpesa_adapter.simulator.engine import Engine
from mpesa_adapter.simulator.errors import DarajaError
from mpesa_adapter.simulator.pull import add_pull_routes

log = logging.getLogger("penpay.sim.mpesa")

ENGINE_KEY = web.AppKey("engine", Engine)
CONTROL_PREFIX = "/__control__"

OAUTH_PATH = "/oauth/v1/generate"
STK_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"
B2C_PATH = "/mpesa/b2c/v3/paymentrequest"
STATUS_PATH = "/mpesa/transactionstatus/v1/query"
BALANCE_PATH = "/mpesa/accountbalance/v1/query"
REVERSAL_PATH = "/mpesa/reversal/v1/request"


def error_response(exc: DarajaError, engine: Engine) -> web.Response:
    if not exc.code:  # OAuth with a wrong key/secret: Daraja answers with an empty body
        return web.Response(status=exc.status)
    body = {
        "requestId": exc.request_id or engine.ids.request_id(),
        "errorCode": exc.code,
        "errorMessage": exc.message,
    }
    return web.json_response(body, status=exc.status)


@web.middleware
async def gateway_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Apigee-style envelopes for unknown resources and wrong methods (not for the control API)."""
    engine = request.app[ENGINE_KEY]
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:
        if request.path.startswith(CONTROL_PREFIX):
            raise
        return error_response(errors.err(errors.METHOD_NOT_ALLOWED), engine)
    except web.HTTPNotFound:
        if request.path.startswith(CONTROL_PREFIX):
            raise
        return error_response(errors.err(errors.RESOURCE_NOT_FOUND), engine)


async def _body(request: web.Request, api: str) -> Any:
    if request.content_type != "application/json":
        # Daraja's documented answer to a missing Content-Type on STK Push.
        raise errors.bad_request("BusinessShortCode") if api == "stk" else errors.invalid_payload()
    try:
        return json.loads(await request.text())
    except (ValueError, UnicodeDecodeError):
        raise errors.invalid_payload() from None


def _phone_of(api: str, body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    key = {"stk": "PhoneNumber", "b2c": "PartyB"}.get(api)
    value = body.get(key) if key else None
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _authorize(engine: Engine, request: web.Request, api: str) -> None:
    presented = engine.tokens.check(request.headers.get("Authorization"))
    if presented is None:
        return
    if engine.config.invalid_token_style == "per_api":
        status, code, message = errors.INVALID_TOKEN_PER_API[api]
        raise engine.error((status, code, message.format(token=presented)))
    raise engine.error(errors.INVALID_TOKEN)


def api_handler(
    api: str, serve: Callable[[Engine, Any], dict[str, Any]]
) -> Callable[..., Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        engine = request.app[ENGINE_KEY]
        try:
            body = await _body(request, api)
            fault = engine.faults.sync_fault(api, _phone_of(api, body), engine.config.phone_rules)
            if fault is not None:
                raise engine.error(fault)
            engine.rate_limit(api)
            _authorize(engine, request, api)
            foreign = engine.faults.answer_fault(api, _phone_of(api, body))
            if foreign is not None and api == "stk_query":
                validation.stk_query(body, engine.config.shortcodes)  # a bad request is still refused
                return web.json_response(stk.foreign_query_body(engine, foreign.params))
            answer = serve(engine, body)
            if foreign is not None:  # b2c: accepted and paid, but the answer names another request
                answer = b2c.foreign_answer(engine, answer)
            if engine.faults.answer_fault(api, _phone_of(api, body), "answer_lost") is not None:
                raise engine.error(errors.INTERNAL_ERROR)  # carried out; its answer never gets back
            return web.json_response(answer)
        except DarajaError as exc:
            return error_response(exc, engine)

    return handle


def _serve_stk(engine: Engine, body: Any) -> dict[str, Any]:
    c = engine.config
    return stk.push(engine, validation.stk_push(body, c.shortcodes, c.stk_limits_sync, c.ban_url_keywords))


def _serve_stk_query(engine: Engine, body: Any) -> dict[str, Any]:
    return stk.query(engine, validation.stk_query(body, engine.config.shortcodes))


def _serve_b2c(engine: Engine, body: Any) -> dict[str, Any]:
    c = engine.config
    return b2c.pay(engine, validation.b2c_payment(body, c.b2c_limits_sync, c.ban_url_keywords))


def _serve_reversal(engine: Engine, body: Any) -> dict[str, Any]:
    return reversal.reverse(engine, validation.reversal(body, engine.config.ban_url_keywords))


def _serve_c2b_register(engine: Engine, body: Any) -> dict[str, Any]:
    return c2b.register(engine, body)


def _serve_status(engine: Engine, body: Any) -> dict[str, Any]:
    return reports.transaction_status(
        engine, validation.transaction_status(body, engine.config.ban_url_keywords)
    )


def _serve_balance(engine: Engine, body: Any) -> dict[str, Any]:
    return reports.account_balance(engine, validation.account_balance(body, engine.config.ban_url_keywords))


async def oauth(request: web.Request) -> web.Response:
    engine = request.app[ENGINE_KEY]
    c = engine.config
    try:
        fault = engine.faults.sync_fault("oauth", None, c.phone_rules)
        if fault is not None:
            raise engine.error(fault)
        answer = engine.tokens.issue(
            request.headers.get("Authorization"),
            request.query.get("grant_type"),
            c.token_ttl,
            c.consumer_key,
            c.consumer_secret,
        )
        return web.json_response(answer)
    except DarajaError as exc:
        return error_response(exc, engine)


def build_app(engine: Engine) -> web.Application:
    app = web.Application(middlewares=[gateway_errors])
    app[ENGINE_KEY] = engine
    app.router.add_get(OAUTH_PATH, oauth, allow_head=False)
    for path, api, serve in (
        (STK_PATH, "stk", _serve_stk),
        (STK_QUERY_PATH, "stk_query", _serve_stk_query),
        (B2C_PATH, "b2c", _serve_b2c),
        (STATUS_PATH, "status", _serve_status),
        (BALANCE_PATH, "balance", _serve_balance),
        (REVERSAL_PATH, "reversal", _serve_reversal),
    ):
        app.router.add_post(path, api_handler(api, serve))
    for path in c2b.REGISTER_PATHS:
        app.router.add_post(path, api_handler("c2b_register", _serve_c2b_register))
    add_pull_routes(app, engine, CONTROL_PREFIX)
    add_control_routes(app, engine, CONTROL_PREFIX)
    return app


class DarajaSimulator:
    """An in-process Daraja. `base_url = await sim.start()` (port 0 picks a free port), `await sim.stop()`,
    or `async with DarajaSimulator(config) as sim:`."""

    def __init__(self, config: SimulatorConfig | None = None, **overrides: Any) -> None:
        config = config or SimulatorConfig()
        self.config = replace(config, **overrides) if overrides else config
        self.engine = Engine(self.config)
        self._runner: web.AppRunner | None = None
        self.base_url: str | None = None

    async def start(self) -> str:
        if self._runner is not None:
            assert self.base_url is not None
            return self.base_url
        await self.engine.dispatcher.start()
        runner = web.AppRunner(build_app(self.engine), access_log=log)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self.engine.dispatcher.close()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{host}:{port}"
        log.info("Daraja simulator listening on %s (seed %s)", self.base_url, self.config.seed)
        return self.base_url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()  # stop accepting requests first
        await self.engine.dispatcher.close()  # then cancel outstanding completions and callbacks

    async def __aenter__(self) -> DarajaSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- conveniences for embedding code and tests ----------------------------------------------------
    def certificate_pem(self) -> str:
        return self.engine.credentials.certificate_pem.decode()

    def security_credential(self, password: str | None = None) -> str:
        """SecurityCredential as a client computes it from certificate_pem()."""
        return self.engine.credentials.encrypt(
            self.config.initiator_password if password is None else password
        )

    @property
    def books(self) -> dict[str, Any]:
        return self.engine.books.snapshot()

    @property
    def callbacks(self) -> list[dict[str, Any]]:
        return list(self.engine.dispatcher.log)

    def add_fault(self, kind: str, **spec: Any) -> int:
        return self.engine.faults.add_fault({"kind": kind, **spec}).id

    def set_outcome(self, api: str, result_code: int | str, **spec: Any) -> int:
        return self.engine.faults.add_outcome({"api": api, "result_code": result_code, **spec}).id

    def reset(self, seed: int | str | None = None, tokens: bool = False) -> None:
        self.engine.reset(seed, tokens)

    async def drain(self, limit: float = 30.0) -> None:
        await self.engine.dispatcher.drain(limit)

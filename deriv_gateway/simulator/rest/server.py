"""The REST simulator's I/O layer: an aiohttp server beside the v3 simulator, on the same books.

    sim = DerivSimulator(SimulatorConfig(port=0, control_port=0))
    await sim.start()
    rest = DerivRestSimulator(sim, RestServerConfig(port=0, openapi=Path(".../rest-api-openapi.json")))
    await rest.start()
    rest.base_url                      # http://127.0.0.1:PORT  (API, /oauth2/*, /__control__/*)

The v3 control API (books, mailbox, clock) sees REST transfers and withdrawals; this server's
`/__control__/` steers the REST side: identities, faults, generation, settlement, Deriv reverting a
completed operation (`POST /__control__/revert {"kind", "request_id"}`), the wallet transactions
leaving `links` out as the live API was seen to (`POST /__control__/config {"omit_links": true}`), the
wire log and the schema violations found with the OpenAPI document loaded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .api import GENERATIONS, Reply, RestApi, RestConfig, RestRequest
from .faults import RestFaultError
from .openapi import OpenApi
from .state import RestState

if TYPE_CHECKING:
    from ..server import DerivSimulator

log = logging.getLogger("deriv_gateway.simulator.rest")

REST_KEY: web.AppKey[DerivRestSimulator] = web.AppKey("rest_simulator")
WIRE_LIMIT = 10_000
_HIDDEN_HEADERS = ("authorization",)


@dataclass
class RestServerConfig:
    host: str = "127.0.0.1"
    port: int = 8770
    openapi: Path | None = None  # Deriv's rest-api-openapi.json: validate every request and reply
    api: RestConfig | None = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


class DerivRestSimulator:
    def __init__(self, v3: DerivSimulator, config: RestServerConfig | None = None) -> None:
        self.v3 = v3
        self.config = config or RestServerConfig()
        self.document = OpenApi.load(self.config.openapi) if self.config.openapi else None
        api_config = self.config.api or RestConfig()
        self.api = RestApi(RestState.default(v3.engine.books, v3.config.seed), api_config)
        self._apply_generation()
        self.wire: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def _apply_generation(self) -> None:
        gen = self.api.config.generation
        self.api.openapi = self.document.for_generation(gen) if self.document else None

    @property
    def base_url(self) -> str:
        assert self.port is not None, "start() first"
        return f"http://{self.config.host}:{self.port}"

    @property
    def state(self) -> RestState:
        # a v3 reset swaps the books: the REST side follows, back to its own seed
        if self.api.state.books is not self.v3.engine.books:
            self.api.state = RestState.default(self.v3.engine.books, self.v3.config.seed)
            self.api.faults.clear()
            self.api.reset_limits()
        return self.api.state

    async def start(self) -> int:
        app = web.Application(client_max_size=1 << 20)
        app[REST_KEY] = self
        app.router.add_route("GET", "/oauth2/auth", _authorize)
        app.router.add_route("POST", "/oauth2/token", _token)
        _control_routes(app)
        app.router.add_route("*", "/{tail:.*}", _api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("deriv REST simulator listening on %s", self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DerivRestSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def record(self, request: RestRequest, reply: Reply) -> None:
        self.wire.append(
            {
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "headers": {k: v for k, v in request.headers.items() if k not in _HIDDEN_HEADERS},
                "body": request.body,
                "status": reply.status,
                "reply": reply.body,
                "dropped": reply.drop,
            }
        )
        del self.wire[:-WIRE_LIMIT]


def _sim(request: web.Request) -> DerivRestSimulator:
    return request.app[REST_KEY]


def _dumps(data: Any) -> str:
    return json.dumps(
        data, default=lambda v: str(v) if isinstance(v, Decimal) else None, separators=(",", ":")
    )


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _to_web(reply: Reply) -> web.Response:
    if reply.status == 302:
        raise web.HTTPFound(reply.headers["Location"])
    return _json(reply.body, reply.status)


async def _api(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    state = sim.state
    body: Any = None
    if request.can_read_body:
        text = await request.text()
        try:
            body = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except ValueError:
            body = text
    rest_request = RestRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
    )
    if isinstance(body, str):
        reply = sim.api.error(rest_request, _bad_json())
    else:
        reply = sim.api.handle(rest_request, sim.v3.engine.clock.now())
    del state
    sim.record(rest_request, reply)
    sim.v3.engine.flush()  # v3 balance streams see REST money moves
    if reply.delay > 0:
        await asyncio.sleep(reply.delay)
    if reply.drop:
        transport = request.transport
        if transport is not None:
            transport.abort()
        return web.Response(status=500)  # never written: the connection is gone
    return _to_web(reply)


def _bad_json() -> Any:
    from .api import Refusal

    return Refusal(400, "InputError", "the body is not JSON")


async def _authorize(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    sim.state  # noqa: B018 - follow a v3 reset
    return _to_web(sim.api.authorize(dict(request.query), sim.v3.engine.clock.now()))


async def _token(request: web.Request) -> web.StreamResponse:
    sim = _sim(request)
    sim.state  # noqa: B018
    form = {k: str(v) for k, v in (await request.post()).items()}
    return _to_web(sim.api.token(form, sim.v3.engine.clock.now()))


# ---- control ---------------------------------------------------------------------------------------


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "body is not JSON"}', content_type="application/json"
        ) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "expected an object"}', content_type="application/json")
    return data


def _bad(message: str, status: int = 400) -> web.Response:
    return _json({"error": message}, status)


async def c_state(request: web.Request) -> web.Response:
    sim = _sim(request)
    state = sim.state
    return _json(
        {
            "config": asdict(sim.api.config),
            "identities": [i.to_dict() for i in state.identities.values()],
            "tokens": [t.to_dict() for t in state.tokens.values()],
            "operations": [op.to_dict() for op in state.operations.values()],
            "rate_limited": sim.api.rate_limited,
        }
    )


async def c_identities(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await _body(request)
    try:
        added = [sim.state.add_identity(i).to_dict() for i in body.get("identities", [])]
        tokens = [sim.state.add_token(t).to_dict() for t in body.get("tokens", [])]
    except (KeyError, TypeError, ValueError) as exc:
        return _bad(str(exc))
    return _json({"identities": added, "tokens": tokens}, 201)


async def c_identity_patch(request: web.Request) -> web.Response:
    sim = _sim(request)
    ident = sim.state.identities.get(request.match_info["loginid"].upper())
    if ident is None:
        return _bad("no such identity", 404)
    body = await _body(request)
    for key in ("deposit_enabled", "withdraw_enabled", "show_real_name"):
        if key in body:
            setattr(ident, key, bool(body[key]))
    return _json(ident.to_dict())


async def c_faults(request: web.Request) -> web.Response:
    return _json({"faults": [r.to_dict() for r in _sim(request).api.faults.rules]})


async def c_add_faults(request: web.Request) -> web.Response:
    sim = _sim(request)
    sim.state  # noqa: B018
    body = await _body(request)
    rules = body.get("rules") if "rules" in body else [body]
    if not isinstance(rules, list):
        return _bad('expected a rule or {"rules": [...]}')
    try:
        created = [sim.api.faults.add(rule).to_dict() for rule in rules]
    except (RestFaultError, TypeError, ValueError) as exc:
        return _bad(str(exc))
    return _json({"faults": created}, 201)


async def c_clear_faults(request: web.Request) -> web.Response:
    _sim(request).api.faults.clear()
    return _json({"cleared": True})


async def c_config(request: web.Request) -> web.Response:
    sim = _sim(request)
    if request.method == "POST":
        body = await _body(request)
        cfg = sim.api.config
        if "generation" in body:
            if body["generation"] not in GENERATIONS:
                return _bad(f"generation must be one of {', '.join(GENERATIONS)}")
            cfg.generation = str(body["generation"])
            sim._apply_generation()
        for key in ("per_minute",):
            if key in body:
                setattr(cfg, key, int(body[key]))
        for key in ("rate_limit_enabled", "require_app_id", "issue_refresh_tokens", "omit_links"):
            if key in body:
                setattr(cfg, key, bool(body[key]))
        if "withdraw_settle_after" in body:
            cfg.withdraw_settle_after = float(body["withdraw_settle_after"])
    return _json(asdict(sim.api.config))


async def c_settle(request: web.Request) -> web.Response:
    sim = _sim(request)
    settled = sim.state.settle_due(sim.v3.engine.clock.now(), force=True)
    sim.v3.engine.flush()
    return _json({"settled": settled})


async def c_revert(request: web.Request) -> web.Response:
    """Deriv reverses a completed operation: `{"kind": "transfer"|"withdraw", "request_id"}`."""
    sim = _sim(request)
    body = await _body(request)
    op = sim.state.operations.get((str(body.get("kind")), str(body.get("request_id"))))
    if op is None:
        return _bad("no such operation")
    try:
        sim.state.revert(op, int(sim.v3.engine.clock.now()))
    except ValueError as exc:
        return _bad(str(exc))
    sim.v3.engine.flush()
    return _json({"operation": op.to_dict()})


async def c_operations(request: web.Request) -> web.Response:
    sim = _sim(request)
    rid = request.query.get("request_id")
    ops = [op.to_dict() for op in sim.state.operations.values() if rid is None or op.request_id == rid]
    return _json({"count": len(ops), "operations": ops})


async def c_wire(request: web.Request) -> web.Response:
    sim = _sim(request)
    if request.method == "DELETE":
        sim.wire.clear()
        return _json({"cleared": True})
    return _json({"count": len(sim.wire), "exchanges": sim.wire})


async def c_violations(request: web.Request) -> web.Response:
    sim = _sim(request)
    return _json({"document": sim.document is not None, "violations": sim.api.violations})


async def c_limits_reset(request: web.Request) -> web.Response:
    _sim(request).api.reset_limits()
    return _json({"reset": True})


def _control_routes(app: web.Application) -> None:
    base = "/__control__"
    app.router.add_get(f"{base}/state", c_state)
    app.router.add_post(f"{base}/identities", c_identities)
    app.router.add_patch(f"{base}/identities/{{loginid}}", c_identity_patch)
    app.router.add_get(f"{base}/faults", c_faults)
    app.router.add_post(f"{base}/faults", c_add_faults)
    app.router.add_delete(f"{base}/faults", c_clear_faults)
    app.router.add_get(f"{base}/config", c_config)
    app.router.add_post(f"{base}/config", c_config)
    app.router.add_post(f"{base}/settle", c_settle)
    app.router.add_get(f"{base}/operations", c_operations)
    app.router.add_post(f"{base}/revert", c_revert)
    app.router.add_get(f"{base}/wire", c_wire)
    app.router.add_delete(f"{base}/wire", c_wire)
    app.router.add_get(f"{base}/violations", c_violations)
    app.router.add_post(f"{base}/limits/reset", c_limits_reset)

"""The control API (aiohttp, JSON): inspect and steer a running simulator.

GET    /health                         status, ports, connection count
GET    /config                         timeouts, rate limits, compression, seed
POST   /config                         {"request_timeout", "idle_timeout", "rate_limits": {...}}
GET    /accounts                       all accounts (balances as decimal strings) and tokens
GET    /accounts/{loginid}
POST   /accounts                       {"accounts": [...], "tokens": [...], "replace": false}
POST   /accounts/{loginid}/adjust      {"amount": "-12.50", "note": "..."}: an adjustment entry
GET    /mailbox                        verification emails; filters loginid, email, type, status
GET    /mailbox/{loginid}              {"loginid", "latest": code or null, "messages": [...]}
DELETE /mailbox
GET    /books/transfers                executed transfers; filters description_contains, kind,
                                       loginid, reference -> {"count", "transfers"}
GET    /books/ledger                   ledger entries; filter loginid
GET    /books/summary                  per-currency totals; "balanced": sum(balances) == injected
GET    /stats/rate_limited             RateLimit answers the call limits gave: {"total", "by_call"}
POST   /reset                          back to the seed (accounts, books, mailbox, clock, faults)
GET    /faults                         rules with their seen/fired counters
POST   /faults                         one rule, or {"rules": [...]} -> the created rules
DELETE /faults                         remove all rules
DELETE /faults/{id}
GET    /clock                          {"now", "offset"}
POST   /clock                          {"advance": seconds} or {"offset": seconds}
POST   /connections/drop               drop every WebSocket connection
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .accounts import SeedError
from .config import RateLimitConfig
from .faults import FaultError
from .money import AmountError, to_minor
from .server import dumps

if TYPE_CHECKING:
    from .server import DerivSimulator

SIM_KEY: web.AppKey[DerivSimulator] = web.AppKey("simulator")


def _sim(request: web.Request) -> DerivSimulator:
    return request.app[SIM_KEY]


def _json(data: Any, status: int = 200) -> web.Response:
    # the WebSocket frames' encoder: request values kept as parsed (Decimal amounts in a verification
    # mail's url_parameters, say) are written the way the simulator writes them on the wire
    return web.json_response(data, status=status, dumps=dumps)


def _bad(message: str, status: int = 400) -> web.Response:
    return _json({"error": message}, status=status)


async def _body(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "body is not JSON"}', content_type="application/json"
        ) from None


async def health(request: web.Request) -> web.Response:
    sim = _sim(request)
    ports = sim.ports
    return _json(
        {
            "status": "ok",
            "ws_port": ports.ws if ports else None,
            "control_port": ports.control if ports else None,
            "connections": len(sim.connections),
            "uptime": round(time.time() - sim.started_at, 3),
        }
    )


def _config_view(sim: DerivSimulator) -> dict[str, Any]:
    cfg = sim.config
    return {
        "seed": cfg.seed,
        "compression": cfg.compression,
        "request_timeout": cfg.request_timeout,
        "idle_timeout": cfg.idle_timeout,
        "verification_code_ttl": cfg.verification_code_ttl,
        "rate_limits": dict(vars(cfg.rate_limits)),
    }


async def get_config(request: web.Request) -> web.Response:
    return _json(_config_view(_sim(request)))


async def post_config(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await _body(request)
    if not isinstance(body, dict):
        return _bad("expected an object")
    cfg = sim.config
    for key in ("request_timeout", "idle_timeout"):
        if key in body:
            setattr(cfg, key, float(body[key]))
    if "verification_code_ttl" in body:
        cfg.verification_code_ttl = int(body["verification_code_ttl"])
    if "rate_limits" in body:
        merged = {**vars(cfg.rate_limits), **body["rate_limits"]}
        cfg.rate_limits = RateLimitConfig.from_dict(merged)
        sim.engine.limiter.config = cfg.rate_limits
    return _json(_config_view(sim))


async def list_accounts(request: web.Request) -> web.Response:
    books = _sim(request).engine.books
    return _json(
        {
            "accounts": [a.to_dict() for a in books.accounts.values()],
            "tokens": [t.to_dict() for t in books.tokens.values()],
        }
    )


async def get_account(request: web.Request) -> web.Response:
    books = _sim(request).engine.books
    account = books.account(request.match_info["loginid"])
    if account is None:
        return _bad("no such account", 404)
    data = account.to_dict()
    data["tokens"] = [t.to_dict() for t in books.tokens.values() if t.loginid == account.loginid]
    return _json(data)


async def post_accounts(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await _body(request)
    if not isinstance(body, dict):
        return _bad("expected an object")
    try:
        loginids = sim.engine.books.load(body, sim.engine.clock.epoch(), replace=bool(body.get("replace")))
    except (SeedError, AmountError, ValueError) as exc:
        return _bad(str(exc))
    sim.engine.flush()
    return _json({"loaded": loginids}, status=201)


async def adjust(request: web.Request) -> web.Response:
    sim = _sim(request)
    books = sim.engine.books
    account = books.account(request.match_info["loginid"])
    if account is None:
        return _bad("no such account", 404)
    body = await _body(request)
    try:
        minor = to_minor(body["amount"], account.currency)
    except (KeyError, TypeError, AmountError) as exc:
        return _bad(f"amount: {exc}")
    note = str(body.get("note", "Adjustment by the simulator control API"))
    try:
        entry = books.adjust(account.loginid, minor, note, sim.engine.clock.epoch())
    except Exception as exc:  # InsufficientFunds
        return _bad(f"cannot adjust: {exc}", 409)
    sim.engine.flush()
    return _json(entry.to_dict(), status=201)


async def mailbox(request: web.Request) -> web.Response:
    sim = _sim(request)
    now = sim.engine.clock.now()
    q = request.query
    messages = []
    for mail in sim.engine.books.mailbox:
        if "loginid" in q and (mail.loginid or "") != q["loginid"].upper():
            continue
        if "email" in q and mail.email.lower() != q["email"].lower():
            continue
        if "type" in q and mail.type != q["type"]:
            continue
        if "status" in q and mail.state(now) != q["status"]:
            continue
        messages.append(mail.to_dict(now))
    return _json({"count": len(messages), "messages": messages})


async def mailbox_for(request: web.Request) -> web.Response:
    sim = _sim(request)
    now = sim.engine.clock.now()
    loginid = request.match_info["loginid"].upper()
    mails = [m for m in sim.engine.books.mailbox if m.loginid == loginid]
    active = [m for m in mails if m.state(now) == "active"]
    return _json(
        {
            "loginid": loginid,
            "latest": active[-1].code if active else None,
            "messages": [m.to_dict(now) for m in mails],
        }
    )


async def clear_mailbox(request: web.Request) -> web.Response:
    _sim(request).engine.books.mailbox.clear()
    return _json({"cleared": True})


async def transfers(request: web.Request) -> web.Response:
    books = _sim(request).engine.books
    q = request.query
    found = books.find_transfers(
        description_contains=q.get("description_contains"),
        kind=q.get("kind"),
        loginid=q.get("loginid"),
        reference=q.get("reference"),
    )
    return _json({"count": len(found), "transfers": [t.to_dict() for t in found]})


async def ledger(request: web.Request) -> web.Response:
    books = _sim(request).engine.books
    loginid = request.query.get("loginid")
    entries = [e for e in books.ledger if loginid is None or e.loginid == loginid.upper()]
    return _json({"count": len(entries), "entries": [e.to_dict() for e in entries]})


async def summary(request: web.Request) -> web.Response:
    return _json(_sim(request).engine.books.summary())


async def rate_limited(request: web.Request) -> web.Response:
    refused = _sim(request).engine.limiter.refused
    return _json({"total": sum(refused.values()), "by_call": dict(refused)})


async def reset(request: web.Request) -> web.Response:
    _sim(request).reset()
    return _json({"reset": True})


async def list_faults(request: web.Request) -> web.Response:
    return _json({"faults": [r.to_dict() for r in _sim(request).faults.rules]})


async def add_faults(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = await _body(request)
    rules = body.get("rules") if isinstance(body, dict) and "rules" in body else [body]
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        return _bad('expected a rule object or {"rules": [...]}')
    created = []
    try:
        for rule in rules:
            created.append(sim.faults.add(rule).to_dict())
    except (FaultError, TypeError, ValueError) as exc:
        return _bad(str(exc))
    return _json({"faults": created}, status=201)


async def clear_faults(request: web.Request) -> web.Response:
    _sim(request).faults.clear()
    return _json({"cleared": True})


async def delete_fault(request: web.Request) -> web.Response:
    if not _sim(request).faults.remove(request.match_info["id"]):
        return _bad("no such fault", 404)
    return _json({"deleted": request.match_info["id"]})


async def get_clock(request: web.Request) -> web.Response:
    clock = _sim(request).engine.clock
    return _json({"now": clock.now(), "offset": clock.offset})


async def post_clock(request: web.Request) -> web.Response:
    clock = _sim(request).engine.clock
    body = await _body(request)
    if "advance" in body:
        clock.advance(float(body["advance"]))
    if "offset" in body:
        clock.offset = float(body["offset"])
    return _json({"now": clock.now(), "offset": clock.offset})


async def drop_connections(request: web.Request) -> web.Response:
    return _json({"dropped": _sim(request).drop_all()})


def build_app(sim: DerivSimulator) -> web.Application:
    app = web.Application()
    app[SIM_KEY] = sim
    app.router.add_get("/health", health)
    app.router.add_get("/config", get_config)
    app.router.add_post("/config", post_config)
    app.router.add_get("/accounts", list_accounts)
    app.router.add_post("/accounts", post_accounts)
    app.router.add_get("/accounts/{loginid}", get_account)
    app.router.add_post("/accounts/{loginid}/adjust", adjust)
    app.router.add_get("/mailbox", mailbox)
    app.router.add_delete("/mailbox", clear_mailbox)
    app.router.add_get("/mailbox/{loginid}", mailbox_for)
    app.router.add_get("/books/transfers", transfers)
    app.router.add_get("/books/ledger", ledger)
    app.router.add_get("/books/summary", summary)
    app.router.add_get("/stats/rate_limited", rate_limited)
    app.router.add_post("/reset", reset)
    app.router.add_get("/faults", list_faults)
    app.router.add_post("/faults", add_faults)
    app.router.add_delete("/faults", clear_faults)
    app.router.add_delete("/faults/{id}", delete_fault)
    app.router.add_get("/clock", get_clock)
    app.router.add_post("/clock", post_clock)
    app.router.add_post("/connections/drop", drop_connections)
    return app


async def start_control(sim: DerivSimulator, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(build_app(sim), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, int(bound)

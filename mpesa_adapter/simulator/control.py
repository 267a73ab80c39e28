"""The control API, under /__control__ on the simulator's own port. Not part of Daraja.

GET    /__control__/health                   status, seed, outstanding background tasks
GET    /__control__/certificate              the X.509 PEM to configure as the M-Pesa certificate
POST   /__control__/security-credential      {"password"?} -> {"SecurityCredential"} (convenience)
GET    /__control__/config                   current settings;  PATCH: change runtime settings
GET    /__control__/faults                   fault and outcome rules;  DELETE: clear fault rules
POST   /__control__/faults                   {"kind", "api"="any", "count"=1|null, "probability"=1,
                                              "phone"?, "seconds"? (delay), "copies"? (duplicate),
                                              "params"? ({"result_code"} of a foreign_answer)}
GET    /__control__/outcomes                 outcome rules;  DELETE: clear
POST   /__control__/outcomes                 {"api": "stk"|"b2c", "result_code", "count"=1|null, "phone"?}
GET    /__control__/books                    all books;  /books/stk/{CheckoutRequestID},
                                             /books/b2c/{OriginatorConversationID}, /books/phone/{msisdn}
POST   /__control__/reset                    {"seed"?, "tokens"?: bool} books, rules, log, random streams
GET    /__control__/callbacks                delivery log (?ref=, ?kind=);  DELETE: clear the log
POST   /__control__/drain                    wait until every scheduled completion/callback is done
POST   /__control__/oauth/expire             expire every issued access token
POST   /__control__/stk/unknown-callback     {"url", "result_code"=0, "amount"=1, "phone"?}
GET    /__control__/c2b/urls                 the paybill URLs registered by Register URL
POST   /__control__/c2b/pay                  a customer pays the paybill (stands for their phone):
                                             {"amount", "account" (BillRefNumber), "phone"?, "shortcode"?,
                                              "validation"? (ask the ValidationURL), "copies"?} ->
                                             {"TransID", "status": completed|declined, "validation"}
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mpesa_adapter.simulator import c2b, stk
from mpesa_adapter.simulator.config import SANDBOX_PHONE
from mpesa_adapter.simulator.engine import Engine
from mpesa_adapter.simulator.errors import parse_code
from mpesa_adapter.simulator.validation import msisdn, valid_url


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "not JSON"}', content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "body must be an object"}', content_type="application/json")
    return body


def add_control_routes(app: web.Application, engine: Engine, prefix: str) -> None:
    routes = web.RouteTableDef()

    @routes.get(f"{prefix}/health")
    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "seed": engine.config.seed, "pending_tasks": engine.dispatcher.pending}
        )

    @routes.get(f"{prefix}/certificate")
    async def certificate(request: web.Request) -> web.Response:
        return web.Response(
            body=engine.credentials.certificate_pem,
            content_type="application/x-pem-file",
            headers={"Content-Disposition": 'attachment; filename="daraja-sim.cer"'},
        )

    @routes.post(f"{prefix}/security-credential")
    async def security_credential(request: web.Request) -> web.Response:
        body = await _json(request)
        password = str(body.get("password", engine.config.initiator_password))
        return web.json_response({"SecurityCredential": engine.credentials.encrypt(password)})

    @routes.get(f"{prefix}/config")
    async def get_config(request: web.Request) -> web.Response:
        return web.json_response(engine.config.public())

    @routes.patch(f"{prefix}/config")
    async def patch_config(request: web.Request) -> web.Response:
        try:
            changed = engine.config.updated(await _json(request))
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
        return web.json_response({"changed": changed, "config": engine.config.public()})

    @routes.get(f"{prefix}/faults")
    async def list_faults(request: web.Request) -> web.Response:
        return web.json_response(engine.faults.public())

    @routes.post(f"{prefix}/faults")
    async def add_fault(request: web.Request) -> web.Response:
        try:
            rule = engine.faults.add_fault(await _json(request))
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
        return web.json_response({"id": rule.id}, status=201)

    @routes.delete(f"{prefix}/faults")
    async def clear_faults(request: web.Request) -> web.Response:
        engine.faults.faults.clear()
        return web.json_response({"cleared": True})

    @routes.get(f"{prefix}/outcomes")
    async def list_outcomes(request: web.Request) -> web.Response:
        return web.json_response(engine.faults.public()["outcomes"])

    @routes.post(f"{prefix}/outcomes")
    async def add_outcome(request: web.Request) -> web.Response:
        try:
            rule = engine.faults.add_outcome(await _json(request))
        except (ValueError, TypeError) as exc:
            return _bad(str(exc))
        return web.json_response({"id": rule.id}, status=201)

    @routes.delete(f"{prefix}/outcomes")
    async def clear_outcomes(request: web.Request) -> web.Response:
        engine.faults.outcomes.clear()
        return web.json_response({"cleared": True})

    @routes.get(f"{prefix}/books")
    async def books(request: web.Request) -> web.Response:
        return web.json_response(engine.books.snapshot())

    @routes.get(f"{prefix}/books/stk/{{checkout_request_id}}")
    async def stk_entry(request: web.Request) -> web.Response:
        record = engine.books.stk.get(request.match_info["checkout_request_id"])
        if record is None:
            return web.json_response({"error": "unknown CheckoutRequestID"}, status=404)
        return web.json_response(record.public())

    @routes.get(f"{prefix}/books/b2c/{{ocid}}")
    async def b2c_entry(request: web.Request) -> web.Response:
        record = engine.books.b2c.get(request.match_info["ocid"])
        if record is None:
            return web.json_response({"error": "unknown OriginatorConversationID"}, status=404)
        return web.json_response(record.public())

    @routes.get(f"{prefix}/books/phone/{{msisdn}}")
    async def phone_entry(request: web.Request) -> web.Response:
        return web.json_response(engine.books.phone(request.match_info["msisdn"]))

    @routes.post(f"{prefix}/reset")
    async def reset(request: web.Request) -> web.Response:
        body = await _json(request)
        engine.reset(body.get("seed"), bool(body.get("tokens", False)))
        return web.json_response({"reset": True, "seed": engine.config.seed})

    @routes.get(f"{prefix}/callbacks")
    async def callbacks(request: web.Request) -> web.Response:
        entries = engine.dispatcher.log
        if "ref" in request.query:
            entries = [e for e in entries if e["ref"] == request.query["ref"]]
        if "kind" in request.query:
            entries = [e for e in entries if e["kind"] == request.query["kind"]]
        return web.json_response(entries)

    @routes.delete(f"{prefix}/callbacks")
    async def clear_callbacks(request: web.Request) -> web.Response:
        engine.dispatcher.log.clear()
        return web.json_response({"cleared": True})

    @routes.post(f"{prefix}/drain")
    async def drain(request: web.Request) -> web.Response:
        body = await _json(request)
        try:
            await engine.dispatcher.drain(float(body.get("timeout", 60.0)))
        except TimeoutError:
            pending = engine.dispatcher.pending
            return web.json_response({"drained": False, "pending_tasks": pending}, status=504)
        return web.json_response({"drained": True})

    @routes.post(f"{prefix}/oauth/expire")
    async def expire(request: web.Request) -> web.Response:
        return web.json_response({"expired": engine.tokens.expire_all()})

    @routes.post(f"{prefix}/stk/unknown-callback")
    async def unknown_callback(request: web.Request) -> web.Response:
        body = await _json(request)
        url = body.get("url")
        if not valid_url(url, False):
            return _bad("url must be an http(s) URL")
        phone = msisdn(body.get("phone", SANDBOX_PHONE))
        amount = body.get("amount", 1)
        if phone is None or not isinstance(amount, int) or amount < 1:
            return _bad("phone must be 254(7|1)XXXXXXXX and amount a positive integer")
        delivery = stk.spoof_callback(engine, str(url), parse_code(body.get("result_code", 0)), amount, phone)
        return web.json_response({"CheckoutRequestID": delivery.ref, "body": delivery.body}, status=202)

    @routes.get(f"{prefix}/c2b/urls")
    async def c2b_urls(request: web.Request) -> web.Response:
        return web.json_response(engine.c2b.public())

    @routes.post(f"{prefix}/c2b/pay")
    async def c2b_pay(request: web.Request) -> web.Response:
        try:
            payment = c2b.payment_request(engine, await _json(request))
        except ValueError as exc:
            return _bad(str(exc))
        return web.json_response(await c2b.pay(engine, payment), status=201)

    app.router.add_routes(routes)

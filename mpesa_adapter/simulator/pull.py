"""Pull Transactions (register + query) and customers' own C2B payments, on the simulator.

Daraja's side (mpesa_adapter/pull_transactions.py describes the wire):
- `POST /pulltransactions/v1/register` registers a shortcode (ResponseStatus "1000"; again: the same);
- `POST /pulltransactions/v1/query` lists the shortcode's C2B payments in [StartDate, EndDate] (Nairobi
  time) from row OffSetValue on, PAGE_SIZE at a time, oldest first: the STK payments it collected and the
  paybill payments the Utility Account collected (`Books.c2b`, made through simulator/c2b.py's
  `POST /__control__/c2b/pay`). Only the last 48 hours are kept. An unregistered shortcode, and the
  seeded fault `pull_failure`, are answered with HTTP 200 and ResponseCode "1001".
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from mpesa_adapter.simulator import errors
from mpesa_adapter.simulator.clock import EAT
from mpesa_adapter.simulator.engine import ORG_NAME, Engine
from mpesa_adapter.simulator.errors import DarajaError
from mpesa_adapter.simulator.validation import shortcode, valid_url

REGISTER_PATH = "/pulltransactions/v1/register"
QUERY_PATH = "/pulltransactions/v1/query"
PAGE_SIZE = 100
KEPT_FOR = timedelta(hours=48)
_DATE = "%Y-%m-%d %H:%M:%S"


def _error_response(engine: Engine, exc: DarajaError) -> web.Response:
    body = {"requestId": engine.ids.request_id(), "errorCode": exc.code, "errorMessage": exc.message}
    return web.json_response(body, status=exc.status)


async def _read(engine: Engine, request: web.Request) -> dict[str, Any]:
    if engine.tokens.check(request.headers.get("Authorization")) is not None:
        raise engine.error(errors.INVALID_TOKEN)
    try:
        body = json.loads(await request.text())
    except (ValueError, UnicodeDecodeError):
        raise errors.invalid_payload() from None
    if not isinstance(body, dict):
        raise errors.invalid_payload()
    return body


def _failure(engine: Engine, message: str) -> web.Response:
    """A failed pull, the way Daraja answers it: HTTP 200 and ResponseCode 1001."""
    return web.json_response(
        {"ResponseRefID": engine.ids.request_id(), "ResponseCode": "1001", "ResponseMessage": message}
    )


def _date(value: Any, field: str) -> datetime:
    try:
        return datetime.strptime(str(value).strip(), _DATE).replace(tzinfo=EAT)
    except ValueError:
        raise errors.bad_request(field) from None


def rows(engine: Engine, code: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The shortcode's C2B payments in [start, end] still kept, oldest first, as Daraja lists them."""
    kept_from = max(start, engine.clock.now() - KEPT_FOR)
    found: list[tuple[datetime, str, str, int, str, str]] = []
    for s in engine.books.stk.values():
        if s.charged and s.shortcode == code and s.completed_at and s.receipt:
            found.append(
                (s.completed_at, s.receipt, s.phone, s.amount, s.account_reference, "c2b-pay-bill-debit")
            )
    for c in engine.books.c2b_collected():
        if c.shortcode == code and c.completed_at is not None:
            found.append((c.completed_at, c.trans_id, c.phone, c.amount, c.bill_ref, "c2b-pay-bill-debit"))
    found.sort(key=lambda r: (r[0], r[1]))
    return [
        {
            "transactionId": receipt,
            "trxDate": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "msisdn": engine.display_phone(phone),
            "sender": "UNKNOWN",
            "transactiontype": kind,
            "billreference": reference,
            "amount": f"{amount:.1f}",
            "organizationname": ORG_NAME,
        }
        for at, receipt, phone, amount, reference, kind in found
        if kept_from <= at <= end
    ]


def add_pull_routes(app: web.Application, engine: Engine, control_prefix: str) -> None:
    async def register(request: web.Request) -> web.Response:
        try:
            body = await _read(engine, request)
            code = shortcode(body.get("ShortCode"))
            if code is None:
                raise errors.bad_request("ShortCode")
            if str(body.get("RequestType") or "") != "Pull":
                raise errors.bad_request("RequestType")
            if not valid_url(body.get("CallBackURL"), False):
                raise errors.bad_request("CallBackURL")
        except DarajaError as exc:
            return _error_response(engine, exc)
        engine.books.pull_registrations[code] = str(body["CallBackURL"])
        return web.json_response(
            {
                "ResponseRefID": engine.ids.request_id(),
                "ResponseStatus": "1000",
                "ShortCode": code,
                "ResponseDescription": f"Shortcode {code} Registered Successfully",
            }
        )

    async def query(request: web.Request) -> web.Response:
        try:
            body = await _read(engine, request)
            code = shortcode(body.get("ShortCode"))
            if code is None:
                raise errors.bad_request("ShortCode")
            start = _date(body.get("StartDate"), "StartDate")
            end = _date(body.get("EndDate"), "EndDate")
            try:
                offset = int(str(body.get("OffSetValue", "0")))
            except ValueError:
                raise errors.bad_request("OffSetValue") from None
            if offset < 0:
                raise errors.bad_request("OffSetValue")
            engine.rate_limit("pull_query")
        except DarajaError as exc:
            return _error_response(engine, exc)
        if engine.faults.pull_fault("pull_query") is not None:
            return _failure(engine, "Failure: the request could not be processed")
        if code not in engine.books.pull_registrations:
            return _failure(engine, f"Shortcode {code} is not registered for Pull Transactions")
        page = rows(engine, code, start, end)[offset : offset + PAGE_SIZE]
        return web.json_response(
            {
                "ResponseRefID": engine.ids.request_id(),
                "ResponseCode": "1000",
                "ResponseMessage": "Success",
                "Response": [page],
            }
        )

    app.router.add_post(REGISTER_PATH, register)
    app.router.add_post(QUERY_PATH, query)

"""The edge every PenPay aiohttp server shares: an over-large request head gets problem JSON.

aiohttp refuses a request line or header over its limits (8190 bytes a field, 128 headers) before
any handler or middleware runs, answering a text/plain 400 that quotes the start of the offending
line, and logging it with that line: a cookie or token would be echoed and logged. ProblemJsonRunner
answers 431 Request Header Fields Too Large (414 URI Too Long for the request line) as problem JSON
instead, quoting nothing, and logs one line without the head's content.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web, web_protocol, web_server
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

log = logging.getLogger("penpay.http_edge")

MAX_FIELD_SIZE = 8190  # bytes of one header line; aiohttp's default, stated so tests can exceed it
MAX_HEADERS = 128
INVALID_ARGUMENT = 3  # google.rpc.Code, for clients that read the grpc-gateway shape


def problem_response(status: int, detail: str) -> web.Response:
    """RFC 9457 fields plus grpc-gateway's code/message, like the bridge's other errors."""
    title = HTTPStatus(status).phrase
    body = {
        "code": INVALID_ARGUMENT,
        "message": detail,
        "details": [],
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")


def _head_too_large(exc: BaseException | None) -> int | None:
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else b""
        starts = bytes(line) if isinstance(line, bytes | bytearray) else str(line).encode()
        # the request target starts the request line; anything else is a header
        return HTTPStatus.REQUEST_URI_TOO_LONG if starts.startswith((b"/", b"http")) else 431
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc.message):
        return 431
    return None


class _RequestHandler(web_protocol.RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        over = _head_too_large(exc)
        if over is None:
            if isinstance(exc, BadHttpMessage):
                # any other unparsable head: problem JSON too, and no quote of what was sent
                log.info("http_bad_request_head", extra={"error": type(exc).__name__})
                response = problem_response(400, "malformed HTTP request")
                response.force_close()
                return response
            return super().handle_error(request, status, exc, message)
        log.info("http_request_head_too_large", extra={"status": int(over), "peer": request.remote})
        detail = (
            "request line too long"
            if over == HTTPStatus.REQUEST_URI_TOO_LONG
            else f"request header fields too large (at most {MAX_HEADERS} headers of {MAX_FIELD_SIZE} bytes)"
        )
        response = problem_response(int(over), detail)
        response.force_close()
        return response


class _Server(web_server.Server):
    __slots__ = ()

    def __call__(self) -> web_protocol.RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class ProblemJsonRunner(web.AppRunner):
    """web.AppRunner whose connections answer an over-large or malformed request head as problem JSON."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_field_size", MAX_FIELD_SIZE)
        kwargs.setdefault("max_line_size", MAX_FIELD_SIZE)
        kwargs.setdefault("max_headers", MAX_HEADERS)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web_server.Server:
        server = await super()._make_server()
        # aiohttp builds its Server inside Application; only the per-connection handler differs.
        server.__class__ = _Server
        return server

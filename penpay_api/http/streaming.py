"""Server-streaming RPCs over HTTP: newline-delimited JSON (default) or server-sent events.

NDJSON (`application/x-ndjson`), as grpc-gateway: one `{"result": <message>}` per line, and a
final `{"error": <error body>}` line when the stream fails. A failure before the first message
gets the mapped HTTP status (with that single error line); later ones arrive in a 200 stream.

SSE (`Accept: text/event-stream`): each message is `data: <message JSON>`; a failure is
`event: error` with the error body; a comment line is sent every `heartbeat` seconds of silence
so that proxies keep the connection and a gone client is noticed. A failure before the first
message is an ordinary JSON error response with the mapped status.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.message import Message

from penpay_api.http import errors
from penpay_api.http.metadata import http_code_override, response_headers
from penpay_api.http.transcode import dumps

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"
_END = object()


def wants_sse(accept: str) -> bool:
    return any(part.split(";")[0].strip().lower() == SSE for part in accept.split(","))


def _error_of(exc: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, dict[str, Any]]:
    code = exc.code()
    details = errors.details_from_trailers(exc.trailing_metadata())
    status = http_code_override(exc.initial_metadata(), exc.trailing_metadata(), success=False)
    return code, errors.error_body(code, exc.details() or "", details, status=status)


class StreamForwarder:
    """Relays one server-streaming call to one HTTP response."""

    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall,
        render: Callable[[Message], Any],
        *,
        sse: bool,
        heartbeat: float | None,
        extra_headers: dict[str, str],
    ) -> None:
        self.call = call
        self.render = render
        self.sse = sse
        self.heartbeat = heartbeat if sse else None
        self.extra_headers = extra_headers
        self.code: grpc.StatusCode = grpc.StatusCode.OK

    async def respond(self, request: web.Request) -> web.StreamResponse:
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=16)
        pump = asyncio.create_task(self._pump(queue))
        response: web.StreamResponse | None = None
        try:
            first = await self._first(queue)
            if isinstance(first, grpc.aio.AioRpcError):
                return self._early_error(first)
            initial = await self.call.initial_metadata()
            headers = response_headers(initial)
            http_code = http_code_override(initial, success=True)
            headers.update(self.extra_headers)
            headers["Content-Type"] = SSE if self.sse else NDJSON
            headers["Cache-Control"] = "no-cache"
            headers["X-Accel-Buffering"] = "no"
            response = web.StreamResponse(status=http_code or 200, headers=headers)
            await response.prepare(request)
            item = first if first is not None else await self._next(queue, response)
            while True:
                if item is _END:
                    break
                if isinstance(item, grpc.aio.AioRpcError):
                    self.code, body = _error_of(item)
                    await response.write(self._frame_error(body))
                    break
                assert isinstance(item, Message)
                await response.write(self._frame(self.render(item)))
                item = await self._next(queue, response)
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
            return response
        except ConnectionError:
            self.code = grpc.StatusCode.CANCELLED  # the client went away mid-stream
            if response is None:
                raise
            return response
        finally:
            pump.cancel()
            self.call.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await pump

    async def _first(self, queue: asyncio.Queue[object]) -> object | None:
        """The first item, or None when the server sent its headers first (the stream is alive).

        A call that fails before its first message (trailers-only) yields its error here, so the
        HTTP status can still be the mapped one.
        """
        get = asyncio.ensure_future(queue.get())
        headers = asyncio.ensure_future(self.call.initial_metadata())
        try:
            await asyncio.wait({get, headers}, return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                await asyncio.sleep(0)
                if self.call.done() or get.done():
                    return await get
                return None
            return get.result()
        finally:
            headers.cancel()
            if not get.done():
                get.cancel()

    async def _next(self, queue: asyncio.Queue[object], response: web.StreamResponse) -> object:
        while True:
            try:
                return await asyncio.wait_for(queue.get(), self.heartbeat)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")

    async def _pump(self, queue: asyncio.Queue[object]) -> None:
        try:
            async for message in self.call:
                await queue.put(message)
        except grpc.aio.AioRpcError as exc:
            await queue.put(exc)
            return
        await queue.put(_END)

    def _early_error(self, exc: grpc.aio.AioRpcError) -> web.Response:
        self.code, body = _error_of(exc)
        status = body["status"]
        if self.sse:
            return web.Response(status=status, body=dumps(body), content_type="application/json")
        return web.Response(status=status, body=self._frame_error(body), content_type=NDJSON)

    def _frame(self, payload: Any) -> bytes:
        if self.sse:
            return b"data: " + dumps(payload) + b"\n\n"
        return dumps({"result": payload}) + b"\n"

    def _frame_error(self, body: dict[str, Any]) -> bytes:
        if self.sse:
            return b"event: error\ndata: " + dumps(body) + b"\n\n"
        return dumps({"error": body}) + b"\n"

"""CORS for the bridge: same-origin by default, an explicit allow-list for a separate frontend.

With no allowed origins (PENPAY_CORS_ALLOWED_ORIGINS empty) the bridge sends no CORS header at
all, so a browser lets only pages of the bridge's own origin read its answers, and a preflight from
any other origin is refused (403). An origin on the list (exact `scheme://host[:port]`, no
wildcard: credentials are involved) gets its preflight answered and
`Access-Control-Allow-Origin: <origin>` with credentials on every answer. The session cookies stay
SameSite=Strict and the double-submit CSRF check is unchanged: CORS only decides who may read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from security.http_edge import problem_response
from security.origins import parse_origins

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE"
# What a frontend sends: JSON bodies, the CSRF echo, idempotency keys, request ids, a deadline.
ALLOWED_HEADERS = "Content-Type, X-CSRF-Token, Idempotency-Key, X-Request-Id, Grpc-Timeout"
EXPOSED_HEADERS = "X-Request-Id, Retry-After"
PREFLIGHT_MAX_AGE = "600"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class CorsPolicy:
    allowed_origins: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> CorsPolicy:
        return cls(parse_origins(text))

    def allows(self, origin: str) -> bool:
        return origin.lower() in self.allowed_origins

    def install(self, app: web.Application) -> None:
        """Preflights answered by a middleware; the CORS headers of every other answer added just
        before it is sent (on_response_prepare), so streamed answers (NDJSON, SSE) get them too."""
        app.middlewares.append(self._preflight)
        app.on_response_prepare.append(self._decorate)

    @web.middleware
    async def _preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        if origin is None or not preflight:
            return await handler(request)
        if not self.allows(origin):
            return problem_response(403, "origin not allowed (PENPAY_CORS_ALLOWED_ORIGINS)")
        response = web.Response(status=204)
        response.headers.update(
            {
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            }
        )
        return response

    async def _decorate(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin is None:
            return
        response.headers.add("Vary", "Origin")
        if self.allows(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS

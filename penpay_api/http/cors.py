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

    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        @web.middleware
        async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
            origin = request.headers.get("Origin")
            if origin is None:
                return await handler(request)
            preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
            if preflight:
                if not self.allows(origin):
                    return problem_response(403, "origin not allowed (PENPAY_CORS_ALLOWED_ORIGINS)")
                response: web.StreamResponse = web.Response(status=204)
                response.headers.update(
                    {
                        "Access-Control-Allow-Methods": ALLOWED_METHODS,
                        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                    }
                )
            else:
                response = await handler(request)
            if self.allows(origin) and not response.prepared:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Allow-Credentials"] = "true"
                response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            if not response.prepared:
                response.headers.add("Vary", "Origin")
            return response

        return cors

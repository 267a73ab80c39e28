"""Response headers of the console's and the docs' pages: a strict Content-Security-Policy (scripts
from this origin only, never inline), no framing, no MIME sniffing, and no caching of pages that
show personal data."""

from __future__ import annotations

from aiohttp import web

_BASE = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "font-src": "'self'",
    "form-action": "'self'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
}
# Swagger UI sets style attributes on its elements; its scripts stay 'self' only.
_DOCS = {**_BASE, "style-src": "'self' 'unsafe-inline'"}


def _policy(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}" for name, value in directives.items())


CONSOLE_CSP = _policy(_BASE)
DOCS_CSP = _policy(_DOCS)


def harden(response: web.StreamResponse, *, csp: str = CONSOLE_CSP, private: bool = True) -> None:
    """`private`: the page may show personal data or a session's state, so nothing keeps a copy."""
    response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if private:
        response.headers["Cache-Control"] = "no-store"

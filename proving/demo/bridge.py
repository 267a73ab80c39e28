"""The HTTP/JSON bridge as a browser frontend talks to it: session cookies and double-submit CSRF.

The bridge sets `penpay_access` / `penpay_refresh` (HttpOnly) and `penpay_csrf` (readable) at
login; every state-changing request echoes `penpay_csrf` in `X-CSRF-Token`
(penpay_api/http/cookies.py). The cookies are `Secure`: like a browser, the jar treats the
bridge's own origin as secure even over plain http on loopback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

CSRF_COOKIE = "penpay_csrf"
CSRF_HEADER = "X-CSRF-Token"


class DemoFailed(Exception):
    """A step of the demo did not go as a working stack would have it."""

    def __init__(self, step: str, message: str, problem: Any = None) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message
        self.problem = problem  # the bridge's error JSON (RFC 9457 shaped), when there was one

    def explain(self) -> str:
        lines = [f"FAILED at step '{self.step}': {self.message}"]
        if self.problem is not None:
            lines.append(json.dumps(self.problem, indent=2, ensure_ascii=False))
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class HttpProblem:
    status: int
    body: Any

    @property
    def reason(self) -> str | None:
        """The stable ErrorInfo reason in the problem's details, if any."""
        details = self.body.get("details", []) if isinstance(self.body, dict) else []
        for detail in details:
            if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo"):
                return str(detail.get("reason") or "") or None
        return None


class BridgeError(Exception):
    def __init__(self, problem: HttpProblem) -> None:
        super().__init__(f"HTTP {problem.status}")
        self.problem = problem


def open_session(base_url: str, request_timeout: float) -> aiohttp.ClientSession:
    # unsafe=True: cookies for an IP-address host (127.0.0.1); treat_as_secure_origin: browsers
    # count loopback as a secure context, so `Secure` cookies travel over http there.
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=URL(base_url).origin())
    return aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=request_timeout))


class BridgeClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")

    def csrf_token(self) -> str | None:
        for cookie in self._session.cookie_jar:
            if cookie.key == CSRF_COOKIE and cookie.value:
                return cookie.value
        return None

    def cookie_values(self) -> list[str]:
        """The values of the cookies the bridge set (session tokens, CSRF token)."""
        return [cookie.value for cookie in self._session.cookie_jar if cookie.value]

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """The JSON answer of a 2xx; BridgeError with the problem JSON otherwise."""
        headers = {"Accept": "application/json"}
        csrf = self.csrf_token()
        if method.upper() not in ("GET", "HEAD", "OPTIONS") and csrf:
            headers[CSRF_HEADER] = csrf
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        async with self._session.request(
            method, self.base_url + path, json=body, params=params, headers=headers
        ) as response:
            text = await response.text()
            try:
                document = json.loads(text) if text else {}
            except ValueError:
                document = {"status": response.status, "body": text[:500]}
            if response.status >= 300:
                raise BridgeError(HttpProblem(response.status, document))
            return document

    async def follow(self, url: str) -> Any:
        """GET an absolute URL as a browser navigates: redirects followed (Deriv's consent page
        sends the browser back to the bridge); the JSON answer where it ends, as `request`."""
        async with self._session.get(url, headers={"Accept": "application/json"}) as response:
            text = await response.text()
            try:
                document = json.loads(text) if text else {}
            except ValueError:
                document = {"status": response.status, "body": text[:500]}
            if response.status >= 300:
                raise BridgeError(HttpProblem(response.status, document))
            return document


async def bridge_answers(base_url: str, seconds: float = 3.0) -> bool:
    """True when an HTTP bridge serves /healthz at `base_url`."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=seconds)) as session,
            session.get(base_url.rstrip("/") + "/healthz") as response,
        ):
            return response.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False

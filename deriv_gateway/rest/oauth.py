"""OAuth2 authorization code + PKCE for new-API accounts (anchors deriv-rest README §2.1).

The bridge sends the user to `authorize_url(...)`; the redirect brings a code back; the backend
exchanges it with the verifier (`OAuthClient.exchange`). A refresh, where Deriv issued a refresh
token, is coalesced: concurrent callers with one refresh token share one request (refresh tokens
rotate, so a second request would fail and log the user out). `invalid_grant` means the binding
is gone: InvalidToken, the user binds again. Codes, verifiers and tokens are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from deriv_gateway.logs import get_logger, register_secret
from deriv_gateway.protocol import errors

log = get_logger("deriv_gateway.rest.oauth")

DERIV_AUTH_BASE = "https://auth.deriv.com"  # S-LLM and the docs; S-OAS says oauth.deriv.com (§12.3)


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge): 64 url-safe characters and BASE64URL(SHA256(verifier))."""
    verifier = secrets.token_urlsafe(48)
    return verifier, challenge_for(verifier)


def challenge_for(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(
    auth_base: str, *, client_id: str, redirect_uri: str, scopes: list[str], state: str, challenge: str
) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return f"{auth_base.rstrip('/')}/oauth2/auth?{urlencode(query)}"


@dataclass(frozen=True, slots=True)
class OAuthTokens:
    access_token: str
    expires_at: float | None
    refresh_token: str | None
    scopes: tuple[str, ...]


class OAuthClient:
    def __init__(
        self,
        auth_base: str,
        client_id: str,
        *,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.time,
        timeout: float = 15.0,
    ) -> None:
        self.token_url = f"{auth_base.rstrip('/')}/oauth2/token"
        self.client_id = client_id
        self.session = session
        self.clock = clock
        self.timeout = timeout
        self._refreshing: dict[str, asyncio.Future[OAuthTokens]] = {}

    async def exchange(self, code: str, *, redirect_uri: str, verifier: str) -> OAuthTokens:
        return await self._grant(
            {
                "grant_type": "authorization_code",
                "client_id": self.client_id,
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            }
        )

    async def refresh(self, refresh_token: str) -> OAuthTokens:
        """One request per refresh token however many callers ask at once."""
        pending = self._refreshing.get(refresh_token)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[OAuthTokens] = asyncio.get_running_loop().create_future()
        self._refreshing[refresh_token] = future
        try:
            form = {
                "grant_type": "refresh_token",
                "client_id": self.client_id,
                "refresh_token": refresh_token,
            }
            tokens = await self._grant(form)
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # retrieved: the callers may be gone
            else:
                future.cancel()
            raise
        else:
            future.set_result(tokens)
            return tokens
        finally:
            self._refreshing.pop(refresh_token, None)

    async def _grant(self, form: dict[str, str]) -> OAuthTokens:
        for key in ("code", "code_verifier", "refresh_token"):
            register_secret(form.get(key))
        try:
            async with self.session.post(
                self.token_url, data=form, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as response:
                status = response.status
                body: Any = await response.json(content_type=None)
        except TimeoutError:
            raise errors.RequestTimeout("no answer from the token endpoint") from None
        except aiohttp.ClientConnectorError:
            raise errors.NotConnected("cannot reach the token endpoint") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise errors.ConnectionLost(f"token endpoint: {type(exc).__name__}") from None
        if not isinstance(body, dict):
            raise errors.UnexpectedReply(f"token endpoint HTTP {status}: not a JSON object")
        if status != 200 or not isinstance(body.get("access_token"), str):
            code = str(body.get("error") or f"HTTP{status}")
            log.info("deriv_rest.oauth_refused", grant=form["grant_type"], error=code)
            if code in ("invalid_grant", "invalid_client", "unauthorized_client"):
                # the code or refresh token is spent or wrong: the user must bind again
                raise errors.InvalidToken(f"{code}: bind the Deriv account again", code=code)
            if status >= 500:
                raise errors.ServiceUnavailable(f"token endpoint HTTP {status}", code=code)
            raise errors.DerivError(f"token endpoint refused: {code}", code=code)
        access = str(body["access_token"])
        register_secret(access)
        refresh = body.get("refresh_token")
        if isinstance(refresh, str):
            register_secret(refresh)
        expires_in = body.get("expires_in")
        expires_at = self.clock() + float(expires_in) if isinstance(expires_in, int | float) else None
        scopes = tuple(str(body.get("scope") or "").split())
        return OAuthTokens(access, expires_at, refresh if isinstance(refresh, str) else None, scopes)

"""DerivOAuth (application/identity/ports) over `rest/oauth.py`: the binding's view of Deriv's OAuth2.

The code exchange and the refresh are made from the backend (the API process), never the browser.
Deriv's answers become the identity use cases' errors: a refused code or refresh token
(invalid_grant, invalid_client) is DerivRebindRequired; a token endpoint that does not answer is
DerivUnavailable (try again); anything else Deriv refuses is DerivBindingRefused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp

from application.identity.errors import DerivBindingRefused, DerivRebindRequired, DerivUnavailable
from application.identity.ports import DerivOAuthTokens
from deriv_gateway.protocol import errors
from deriv_gateway.rest.oauth import OAuthClient, OAuthTokens, authorize_url

_UNAVAILABLE = (
    errors.RequestTimeout,
    errors.NotConnected,
    errors.ConnectionLost,
    errors.ServiceUnavailable,
    errors.UnexpectedReply,
)


class DerivOAuthAdapter:
    def __init__(
        self,
        *,
        auth_base: str,
        client_id: str,
        redirect_uri: str,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 15.0,
    ) -> None:
        self.auth_base = auth_base
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self._own_session = session is None
        self._session = session
        self._clock = clock
        self._timeout = timeout
        self._client: OAuthClient | None = None

    def _oauth(self) -> OAuthClient:
        if self._client is None:  # made inside the running loop (aiohttp wants one)
            if self._session is None:
                self._session = aiohttp.ClientSession()
            self._client = OAuthClient(
                self.auth_base,
                self.client_id,
                session=self._session,
                clock=self._clock,
                timeout=self._timeout,
            )
        return self._client

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session, self._client = None, None

    def authorize_url(self, *, state: str, challenge: str, scopes: tuple[str, ...]) -> str:
        return authorize_url(
            self.auth_base,
            client_id=self.client_id,
            redirect_uri=self.redirect_uri,
            scopes=list(scopes),
            state=state,
            challenge=challenge,
        )

    async def exchange(self, *, code: str, verifier: str) -> DerivOAuthTokens:
        try:
            tokens = await self._oauth().exchange(code, redirect_uri=self.redirect_uri, verifier=verifier)
        except errors.DerivError as exc:
            raise _error(exc, "the Deriv sign-in code was refused (used or expired): bind again") from None
        return _tokens(tokens)

    async def refresh(self, refresh_token: str) -> DerivOAuthTokens:
        try:
            tokens = await self._oauth().refresh(refresh_token)
        except errors.DerivError as exc:
            raise _error(exc, "your Deriv sign-in has expired: bind your Deriv account again") from None
        return _tokens(tokens)


def _error(exc: errors.DerivError, rebind: str) -> Exception:
    if isinstance(exc, errors.InvalidToken):
        return DerivRebindRequired(rebind)
    if isinstance(exc, _UNAVAILABLE):
        return DerivUnavailable("Deriv's sign-in service is not answering; try again shortly")
    return DerivBindingRefused(f"Deriv refused the sign-in ({exc.code or 'refused'})")


def _tokens(tokens: OAuthTokens) -> DerivOAuthTokens:
    expires = datetime.fromtimestamp(tokens.expires_at, UTC) if tokens.expires_at is not None else None
    return DerivOAuthTokens(tokens.access_token, tokens.refresh_token, expires, tokens.scopes)

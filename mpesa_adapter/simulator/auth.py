"""OAuth client-credentials tokens (daraja-protocol.md section 1). Pure logic, no aiohttp."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

from mpesa_adapter.simulator import errors
from mpesa_adapter.simulator.errors import DarajaError


@dataclass
class _Token:
    value: str
    credential: str
    expires_at: float


class TokenStore:
    """One live token per consumer key: issuing a new one invalidates the previous (portal FAQ)."""

    def __init__(self, make_token: Callable[[], str], monotonic: Callable[[], float]) -> None:
        self._make = make_token
        self._now = monotonic
        self._by_value: dict[str, _Token] = {}
        self._by_credential: dict[str, _Token] = {}

    def reset(self) -> None:
        self._by_value.clear()
        self._by_credential.clear()

    def issue(
        self,
        authorization: str | None,
        grant_type: str | None,
        ttl: int,
        key: str | None,
        secret: str | None,
    ) -> dict[str, str]:
        """Answer for GET /oauth/v1/generate, or raise. A wrong key/secret raises with status 400, no code."""
        if grant_type != "client_credentials":
            raise errors.err(errors.OAUTH_BAD_GRANT)
        scheme, _, blob = (authorization or "").partition(" ")
        if scheme.lower() != "basic" or not blob.strip():
            raise errors.err(errors.OAUTH_BAD_AUTH_TYPE)
        try:
            consumer_key, sep, consumer_secret = (
                base64.b64decode(blob.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise DarajaError(400, "", "") from None
        if not sep or not consumer_key or not consumer_secret:
            raise DarajaError(400, "", "")
        if key is not None and (consumer_key != key or consumer_secret != secret):
            raise DarajaError(400, "", "")
        old = self._by_credential.pop(consumer_key, None)
        if old is not None:
            self._by_value.pop(old.value, None)
        token = _Token(self._make(), consumer_key, self._now() + ttl)
        self._by_credential[consumer_key] = token
        self._by_value[token.value] = token
        return {"access_token": token.value, "expires_in": str(max(ttl - 1, 0))}

    def check(self, authorization: str | None) -> str | None:
        """None if the Bearer token is live; else the presented token ('' if the header is not Bearer)."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme != "Bearer" or not value.strip():
            raise errors.err(errors.INVALID_AUTH_HEADER)
        value = value.strip()
        token = self._by_value.get(value)
        if token is None or token.expires_at <= self._now():
            return value
        return None

    def expire_all(self) -> int:
        count = len(self._by_value)
        for token in self._by_value.values():
            token.expires_at = 0.0
        return count

"""Access tokens: JWT signed RS256 with rotatable keys, published as a JWKS document.

- The algorithm is pinned: only RS256 verifies (alg "none", HS256 made with the public key and
  any other algorithm are refused), and the header's `kid` must name a key we hold.
- TTL is at most 15 minutes; issuer and audience are checked; exp, iat, sub, aud, iss, jti required.
- Rotation: keys are an ordered list, the first signs; older keys stay listed (and in the JWKS)
  until the tokens they signed have expired, then are dropped.
- A token verified once is remembered (its exact text -> its claims) until it expires: the RS256
  check and three base64/JSON decodes were the largest CPU cost of an authenticated call, and a
  client sends the same token for its whole life. What the signature proves cannot change for the
  same bytes under the same keys (a rotation makes a new instance, with an empty memory); expiry and
  not-before are still judged against `now` at every call. Refusals are never remembered.

Keys come from PENPAY_JWT_PRIVATE_KEYS ("kid1:/path/key1.pem,kid2:/path/key2.pem", PEM RSA private
keys, first = current). Outside production, a fresh 2048-bit key per process is made when unset.
Issuer and audience: PENPAY_JWT_ISSUER (default "penpay"), PENPAY_JWT_AUDIENCE (default "penpay-api").
All are read by penpay/settings.py and handed in by the composition root (`configured`).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Self

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from application.identity.errors import InvalidAccessToken
from application.identity.ports import AccessClaims
from security.config import MissingSecret

ALGORITHM = "RS256"
MAX_TTL = timedelta(minutes=15)
DEFAULT_TTL = timedelta(minutes=10)
LEEWAY_SECONDS = 30
# Tokens remembered as verified, at most (one per client session, each for at most MAX_TTL).
VERIFIED_CACHE_SIZE = 10_000  # ~2 KB each (the text and its claims): ~20 MB at most


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(kid or f"k{secrets.token_hex(4)}", key)

    @classmethod
    def from_pem(cls, kid: str, pem: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            raise ValueError(f"JWT key {kid} must be an RSA private key of at least 2048 bits")
        return cls(kid, key)

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": ALGORITHM,
            "kid": self.kid,
            "n": _b64uint(numbers.n),
            "e": _b64uint(numbers.e),
        }


def _b64uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class RsaAccessTokens:
    """Implements application.identity.ports.AccessTokenIssuer."""

    def __init__(
        self,
        keys: Sequence[SigningKey],
        *,
        issuer: str = "penpay",
        audience: str = "penpay-api",
        ttl: timedelta = DEFAULT_TTL,
    ) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        if ttl > MAX_TTL or ttl <= timedelta(0):
            raise ValueError("access token TTL must be positive and at most 15 minutes")
        kids = [k.kid for k in keys]
        if len(set(kids)) != len(kids):
            raise ValueError("JWT key ids must be unique")
        self._keys = list(keys)
        self._by_kid = {k.kid: k for k in keys}
        self._public = {k.kid: k.private_key.public_key() for k in keys}
        # token text -> (its claims, its payload): see the module's docstring
        self._verified: dict[str, tuple[AccessClaims, Mapping[str, Any]]] = {}
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl

    @classmethod
    def configured(
        cls,
        private_keys: str,
        *,
        production: bool,
        issuer: str = "penpay",
        audience: str = "penpay-api",
        ttl: timedelta = DEFAULT_TTL,
    ) -> Self:
        """From PENPAY_JWT_PRIVATE_KEYS; unset: a throwaway key, or MissingSecret in production."""
        spec = private_keys.strip()
        if spec:
            keys = []
            for part in (p.strip() for p in spec.split(",") if p.strip()):
                kid, _, path = part.partition(":")
                try:
                    keys.append(SigningKey.from_pem(kid.strip(), Path(path.strip()).read_bytes()))
                except (OSError, ValueError, TypeError) as error:
                    # One line naming the setting (the CLI prints it), never the key's bytes.
                    raise MissingSecret(
                        f"PENPAY_JWT_PRIVATE_KEYS: key {kid.strip()!r} at {path.strip()!r} is not a "
                        f"readable RSA private key in PEM of at least 2048 bits ({type(error).__name__})"
                    ) from None
        elif production:
            raise MissingSecret(
                "PENPAY_JWT_PRIVATE_KEYS: expected kid:/path/key.pem[,kid:/path/older.pem]; "
                "production has no default"
            )
        else:
            keys = [SigningKey.generate()]
        return cls(keys, issuer=issuer, audience=audience, ttl=ttl)

    @property
    def current_kid(self) -> str:
        return self._keys[0].kid

    def rotated(self, new_key: SigningKey, *, keep: int = 2) -> RsaAccessTokens:
        """A new key signs from now on; the `keep - 1` most recent old keys still verify."""
        return RsaAccessTokens(
            [new_key, *self._keys][:keep], issuer=self.issuer, audience=self.audience, ttl=self.ttl
        )

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [k.jwk() for k in self._keys]}

    def issue(self, *, user_id: str, device_id: str, session_id: str, now: datetime) -> tuple[str, datetime]:
        expires = now + self.ttl
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "did": device_id,
            "sid": session_id,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": secrets.token_hex(16),
        }
        token = jwt.encode(
            claims, self._keys[0].private_key, algorithm=ALGORITHM, headers={"kid": self.current_kid}
        )
        return token, expires

    def verify(self, token: str, *, now: datetime) -> AccessClaims:
        return self.verified(token, now=now)[0]

    def verified(self, token: str, *, now: datetime) -> tuple[AccessClaims, Mapping[str, Any]]:
        """The token's claims and its whole payload, once its signature, algorithm, key, issuer,
        audience and times are checked; InvalidAccessToken otherwise."""
        # Expiry and not-before are checked here against `now` (the caller's clock): PyJWT's own
        # checks would read the wall clock behind the caller's back.
        instant = now.timestamp()
        known = self._verified.get(token)
        if known is None:
            known = self._check_signed(token)
            self._remember(token, known, instant)
        claims, payload = known
        if claims.expires_at + LEEWAY_SECONDS < instant:
            raise InvalidAccessToken("access token expired")
        if int(payload.get("nbf", payload["iat"])) - LEEWAY_SECONDS > instant:
            raise InvalidAccessToken("access token refused: ImmatureSignatureError")
        return known

    def _check_signed(self, token: str) -> tuple[AccessClaims, Mapping[str, Any]]:
        """Everything but the times, which depend on when the token is used."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidAccessToken("malformed access token") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidAccessToken("access token algorithm refused")
        kid = header.get("kid")
        key = self._public.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidAccessToken("access token signed by an unknown key")
        options: Any = {"require": ["exp", "iat", "sub", "aud", "iss", "jti"]}
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={**options, "verify_exp": False, "verify_nbf": False, "verify_iat": False},  # type: ignore[arg-type]
            )
            claims = AccessClaims(
                user_id=str(payload["sub"]),
                device_id=str(payload.get("did", "")),
                session_id=str(payload.get("sid", "")),
                expires_at=int(payload["exp"]),
            )
            int(payload.get("nbf", payload["iat"]))  # a time that is not a number is refused here
        except (TypeError, ValueError) as exc:
            raise InvalidAccessToken(f"access token refused: {type(exc).__name__}") from exc
        except jwt.PyJWTError as exc:
            raise InvalidAccessToken(f"access token refused: {type(exc).__name__}") from exc
        return claims, MappingProxyType(payload)  # shared by every call with this token: read-only

    def _remember(self, token: str, verified: tuple[AccessClaims, Mapping[str, Any]], instant: float) -> None:
        cache = self._verified
        if len(cache) >= VERIFIED_CACHE_SIZE:
            for text in [t for t, (c, _) in cache.items() if c.expires_at + LEEWAY_SECONDS < instant]:
                del cache[text]
            # the oldest remembered, a tenth at once, so that the scan above is rare when full
            for text in list(cache)[: max(0, len(cache) - VERIFIED_CACHE_SIZE * 9 // 10)]:
                del cache[text]
        cache[token] = verified

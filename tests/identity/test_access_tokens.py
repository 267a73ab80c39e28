"""RS256 access tokens: alg pinned, kid required, TTL bounded, expiry/audience/issuer checked, JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm

from application.identity.errors import InvalidAccessToken
from security import access_tokens
from security.access_tokens import RsaAccessTokens, SigningKey

pytestmark = pytest.mark.unit

KEY = SigningKey.generate("k1")
# A fixed instant, not the wall clock: every check here is made as of `now=NOW`.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def tokens() -> RsaAccessTokens:
    return RsaAccessTokens([KEY])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": "penpay",
        "aud": "penpay-api",
        "sub": "u1",
        "iat": int(NOW.timestamp()),
        "exp": int((NOW + timedelta(minutes=5)).timestamp()),
        "jti": "j1",
    }
    base.update(overrides)
    return base


def test_a_token_round_trips_with_kid_and_short_ttl(tokens: RsaAccessTokens) -> None:
    token, expires = tokens.issue(user_id="u1", device_id="device-1", session_id="s1", now=NOW)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": "k1", "typ": "JWT"}
    assert expires - NOW <= timedelta(minutes=15)
    claims = tokens.verify(token, now=NOW)
    assert (claims.user_id, claims.device_id, claims.session_id) == ("u1", "device-1", "s1")


def test_a_token_is_refused_before_it_is_valid_and_after_it_expires(tokens: RsaAccessTokens) -> None:
    token, expires = tokens.issue(user_id="u1", device_id="d", session_id="s", now=NOW)
    with pytest.raises(InvalidAccessToken):
        tokens.verify(token, now=NOW - timedelta(minutes=5))
    assert tokens.verify(token, now=expires).user_id == "u1"  # within the leeway
    with pytest.raises(InvalidAccessToken, match="expired"):
        tokens.verify(token, now=expires + timedelta(minutes=1))


def test_alg_none_is_refused(tokens: RsaAccessTokens) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode())
    body = _b64(json.dumps(_claims()).encode())
    with pytest.raises(InvalidAccessToken):
        tokens.verify(f"{header}.{body}.", now=NOW)


def test_hs256_signed_with_the_public_key_is_refused(tokens: RsaAccessTokens) -> None:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = _b64(json.dumps(_claims()).encode())
    signature = hmac.new(KEY.public_pem(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidAccessToken):
        tokens.verify(f"{header}.{body}.{_b64(signature)}", now=NOW)


@pytest.mark.parametrize(
    ("claims", "headers"),
    [
        (_claims(exp=int((NOW - timedelta(minutes=2)).timestamp())), {"kid": "k1"}),  # expired
        (_claims(aud="someone-else"), {"kid": "k1"}),  # wrong audience
        (_claims(iss="evil"), {"kid": "k1"}),  # wrong issuer
        (_claims(), {"kid": "unknown"}),  # unknown kid
        (_claims(), {}),  # no kid
        ({k: v for k, v in _claims().items() if k != "jti"}, {"kid": "k1"}),  # a required claim missing
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "unknown-kid", "no-kid", "missing-claim"],
)
def test_bad_tokens_are_refused(
    tokens: RsaAccessTokens, claims: dict[str, object], headers: dict[str, str]
) -> None:
    token = jwt.encode(claims, KEY.private_key, algorithm="RS256", headers=headers)
    with pytest.raises(InvalidAccessToken):
        tokens.verify(token, now=NOW)


def test_a_token_from_another_key_with_a_known_kid_is_refused(tokens: RsaAccessTokens) -> None:
    forged = jwt.encode(
        _claims(), SigningKey.generate("k1").private_key, algorithm="RS256", headers={"kid": "k1"}
    )
    with pytest.raises(InvalidAccessToken):
        tokens.verify(forged, now=NOW)


def test_rotation_keeps_old_tokens_valid_and_the_jwks_lists_both(tokens: RsaAccessTokens) -> None:
    old_token, _ = tokens.issue(user_id="u1", device_id="d", session_id="s", now=NOW)
    rotated = tokens.rotated(SigningKey.generate("k2"))
    new_token, _ = rotated.issue(user_id="u2", device_id="d", session_id="s", now=NOW)
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert rotated.verify(old_token, now=NOW).user_id == "u1"
    jwks = rotated.jwks()
    assert [k["kid"] for k in jwks["keys"]] == ["k2", "k1"]
    assert all(k["alg"] == "RS256" and k["kty"] == "RSA" and "d" not in k for k in jwks["keys"])
    # the JWKS really carries the public key: a standard client verifies the signature with it
    # (its expiry check would read the wall clock; expiry is tested above, as of a fixed instant)
    public = RSAAlgorithm.from_jwk(json.dumps(jwks["keys"][0]))
    assert isinstance(public, RSAPublicKey)  # a JWKS holds no private part
    claims = jwt.decode(
        new_token, public, algorithms=["RS256"], audience="penpay-api", options={"verify_exp": False}
    )
    assert claims["sub"] == "u2"
    # once dropped, the old key's tokens are refused
    with pytest.raises(InvalidAccessToken):
        rotated.rotated(SigningKey.generate("k3")).rotated(SigningKey.generate("k4")).verify(
            old_token, now=NOW
        )


def test_ttl_above_fifteen_minutes_is_refused() -> None:
    with pytest.raises(ValueError):
        RsaAccessTokens([KEY], ttl=timedelta(minutes=16))


def test_a_remembered_token_is_still_judged_by_its_times(tokens: RsaAccessTokens) -> None:
    token, expires = tokens.issue(user_id="u1", device_id="d", session_id="s", now=NOW)
    assert tokens.verify(token, now=NOW).user_id == "u1"  # verified, and remembered
    with pytest.raises(InvalidAccessToken, match="expired"):
        tokens.verify(token, now=expires + timedelta(minutes=1))
    with pytest.raises(InvalidAccessToken):
        tokens.verify(token, now=NOW - timedelta(minutes=5))
    assert tokens.verify(token, now=NOW).user_id == "u1"


def test_only_the_exact_token_is_remembered(tokens: RsaAccessTokens) -> None:
    token, _ = tokens.issue(user_id="u1", device_id="d", session_id="s", now=NOW)
    tokens.verify(token, now=NOW)
    head, payload, signature = token.split(".")
    forged = _b64(json.dumps(_claims(sub="u2")).encode())
    for altered in (f"{head}.{forged}.{signature}", f"{head}.{payload}.{signature[:-2]}AA"):
        with pytest.raises(InvalidAccessToken):
            tokens.verify(altered, now=NOW)
    assert tokens.verify(token, now=NOW).user_id == "u1"


def test_the_memory_of_verified_tokens_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access_tokens, "VERIFIED_CACHE_SIZE", 3)
    tokens = RsaAccessTokens([KEY])
    issued = [tokens.issue(user_id=f"u{i}", device_id="d", session_id="s", now=NOW)[0] for i in range(5)]
    for token in issued:
        tokens.verify(token, now=NOW)
    assert len(tokens._verified) <= 3
    assert [tokens.verify(t, now=NOW).user_id for t in issued] == [f"u{i}" for i in range(5)]

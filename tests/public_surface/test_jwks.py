"""The access tokens' public keys, published for internal verifiers at /.well-known/jwks.json."""

from __future__ import annotations

import json

import jwt
import pytest
from jwt.algorithms import RSAAlgorithm

from tests.public_surface.conftest import ACCESS, Surface

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


async def test_the_bridge_publishes_the_jwks_that_verifies_a_session_token(surface: Surface) -> None:
    user = await surface.sign_up()
    published = await surface.browser().get("/.well-known/jwks.json")  # no session needed
    assert published.status == 200
    assert published.json == surface.tokens.jwks()
    (key,) = published.json["keys"]
    assert {"kty", "use", "alg", "kid", "n", "e"} == set(key) and key["alg"] == "RS256"
    # an internal verifier checks a user's access token with nothing but the published set
    token = user.browser.cookies[ACCESS]
    assert jwt.get_unverified_header(token)["kid"] == key["kid"]
    claims = jwt.decode(
        token,
        RSAAlgorithm.from_jwk(json.dumps(key)),  # type: ignore[arg-type]
        algorithms=["RS256"],
        audience=surface.tokens.audience,
        options={"verify_exp": False},  # the surface's clock is fixed; the signature is the point
    )
    assert claims["sub"] == user.user_id

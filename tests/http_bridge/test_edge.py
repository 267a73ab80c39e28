"""The bridge's edge: an over-large request head gets problem JSON 431 (nothing echoed, nothing
logged of it, nothing forwarded); CORS is same-origin unless an origin is on the allow-list."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import structlog

from penpay_api.http import CorsPolicy
from security.logs import configure_logging
from tests.http_bridge.conftest import TEST_CONFIG, Bridge

pytestmark = pytest.mark.integration

SECRET = "eyJ-not-a-real-token-" + "x" * 40
FRONTEND = "https://app.penpay.example"


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging("DEBUG", stream)
    yield stream
    for handler in [h for h in root.handlers if h.get_name() == "penpay-json"]:
        root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


async def raw_request(base_url: str, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `head` as is over a socket; the status, headers and body of the answer."""
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(head)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = dict(line.decode().split(": ", 1) for line in header_block.split(b"\r\n") if b": " in line)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


_TOKEN = SECRET.encode()
OVER_LARGE_HEADS = {
    # a 20 kB cookie (a token in it): one header over the 8190-byte field limit
    "header": b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nCookie: penpay_access="
    + _TOKEN
    + b"A" * 20_000
    + b"\r\n\r\n",
    # a 20 kB request target
    "target": b"GET /v1/whoami?q=" + _TOKEN + b"A" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    # more than 128 headers
    "many-headers": b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nX-T: "
    + _TOKEN
    + b"\r\n"
    + b"".join(b"X-Pad-%d: 1\r\n" % i for i in range(200))
    + b"\r\n",
}


@pytest.mark.parametrize("head", OVER_LARGE_HEADS.values(), ids=OVER_LARGE_HEADS.keys())
async def test_an_over_large_head_gets_problem_json_and_is_neither_echoed_nor_logged(
    bridge: Bridge, logged: io.StringIO, head: bytes
) -> None:
    status, headers, body = await raw_request(bridge.base_url, head)
    assert status == (414 if head.startswith(b"GET /v1/whoami?") else 431)
    assert headers["content-type"].startswith("application/json")
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"] == problem["message"]
    assert SECRET.encode() not in body and b"AAAA" not in body
    assert SECRET not in logged.getvalue()
    assert bridge.recorder.names() == []  # nothing reached the backend
    # the bridge still serves the next request
    async with bridge.http.get("/v1/whoami") as response:
        assert response.status == 200


async def test_a_header_just_under_the_limit_passes(bridge: Bridge) -> None:
    async with bridge.http.get("/v1/whoami", headers={"X-Big": "b" * 8000}) as response:
        assert response.status == 200


async def test_same_origin_by_default(bridge: Bridge) -> None:
    preflight = {"Origin": FRONTEND, "Access-Control-Request-Method": "POST"}
    async with bridge.http.options("/v1/whoami", headers=preflight) as response:
        assert response.status == 403
        problem = await response.json()
        assert "Access-Control-Allow-Origin" not in response.headers
    assert problem["status"] == 403 and "origin" in problem["detail"]
    async with bridge.http.get("/v1/whoami", headers={"Origin": FRONTEND}) as response:
        assert response.status == 200  # answered, but a browser lets no other origin's script read it
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_an_allowed_frontend_origin_gets_credentialed_cors(serve_bridge: Any) -> None:
    config = dataclasses.replace(
        TEST_CONFIG, cors=CorsPolicy.parse(f"{FRONTEND}, https://admin.penpay.example")
    )
    async with serve_bridge(config) as bridge:
        preflight = {
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-csrf-token",
        }
        async with bridge.http.options("/v1/whoami", headers=preflight) as response:
            assert response.status == 204
            allowed = response.headers
        assert allowed["Access-Control-Allow-Origin"] == FRONTEND
        assert allowed["Access-Control-Allow-Credentials"] == "true"
        assert "X-CSRF-Token" in allowed["Access-Control-Allow-Headers"]
        assert "Origin" in allowed["Vary"]
        async with bridge.http.get("/v1/whoami", headers={"Origin": FRONTEND}) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
            assert "X-Request-Id" in response.headers["Access-Control-Expose-Headers"]
        # a streamed answer (headers sent before the handler returns) gets them too
        async with bridge.http.get(
            "/v1/items:watch", params={"count": "1"}, headers={"Origin": FRONTEND}
        ) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
            await response.read()
        async with bridge.http.get("/v1/whoami", headers={"Origin": "https://evil.example"}) as response:
            assert "Access-Control-Allow-Origin" not in response.headers
        preflight["Origin"] = "https://evil.example"
        async with bridge.http.options("/v1/whoami", headers=preflight) as response:
            assert response.status == 403


@pytest.mark.unit
@pytest.mark.parametrize("bad", ["*", "app.penpay.example", "https://app.penpay.example/path", "ftp://x"])
def test_an_allow_list_entry_must_be_an_origin(bad: str) -> None:
    with pytest.raises(ValueError, match="scheme://host"):
        CorsPolicy.parse(bad)

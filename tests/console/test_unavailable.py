"""The console in front of an API that does not answer: a page that says so (503), changes nothing,
and keeps the security headers; no browser needed."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from penpay_api.http import BridgeConfig, build_app, discover_services, start_server
from penpay_api.http.discovery import packages_for

pytestmark = pytest.mark.integration


async def test_an_api_that_does_not_answer_gets_an_unavailable_page() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = probe.getsockname()[1]  # closed again: nothing listens there
    app = build_app(
        discover_services(packages_for("testing")),
        f"127.0.0.1:{nobody}",
        config=BridgeConfig(default_timeout=5.0),
    )
    runner, port = await start_server(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            async with http.get("/ops/", headers={"Authorization": "Bearer not-a-token"}) as page:
                assert page.status == 503
                assert "The API did not answer" in await page.text()
                assert page.headers["Cache-Control"] == "no-store"
                assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
            async with http.get("/ops/", allow_redirects=False) as anonymous:
                assert anonymous.status == 303 and anonymous.headers["Location"] == "/ops/login"
    finally:
        await runner.cleanup()

"""The ops console in a real browser: the review stack of tests/ops (MariaDB, Redis Streams, both
simulators, the Deriv gateway, the gRPC API) with the HTTP bridge in front of it, and Debian's
Chromium driven headless by Playwright. Screenshots go to build/console-screenshots/."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from penpay_api.http import BridgeConfig, build_app, discover_services, start_server
from penpay_api.http.discovery import packages_for
from tests import databases
from tests.conftest import REDIS_URL
from tests.ops.conftest import Review, review_stack
from tests.sagas.harness import MPESA_FLOAT_KES

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "console-screenshots"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("PENPAY_CHROMIUM", "/usr/bin/chromium")


@dataclass
class Console:
    review: Review
    url: str
    http: aiohttp.ClientSession
    browser: Any
    _customer: Any = None

    async def customer(self) -> Any:
        """The module's customer (the Deriv simulator has one client to bind), made once."""
        if self._customer is None:
            self._customer = await self.review.stack.user(phone="254712345671")
        return self._customer

    async def page_for(self, token: str | None) -> Any:
        """A fresh browser context (its own cookies), signed in with `token` when given."""
        context = await self.browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        if token is not None:
            await page.goto(f"{self.url}/ops/login")
            await page.get_by_label("Staff access token").fill(token)
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_url(f"{self.url}/ops/")
        return page

    async def axe(self, page: Any) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations on the page (injected over the DevTools
        protocol: the page's CSP forbids any script that is not its own)."""
        await page.evaluate(AXE.read_text())
        result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]

    async def screenshot(self, page: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def module_mariadb_url() -> Iterator[str]:
    """A migrated MariaDB database of this module's own (migrations run outside the event loop)."""
    name, url = databases.create_mysql_database()
    yield url
    databases.drop_mysql_database(name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(module_mariadb_url: str) -> AsyncIterator[Console]:
    """One stack, bridge and browser for a whole test module (tests in it run in file order on one
    event loop: mark the module `pytest.mark.asyncio(loop_scope="module")`)."""
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: scripts/services.sh installs it (apt-get install chromium)")
    if not AXE.exists():
        pytest.fail("node_modules/axe-core is missing: run scripts/setup.sh")
    database_url = module_mariadb_url
    # The simulator's utility account starts where the ledger's M-Pesa float does, so a
    # reconciliation of this stack finds the floats matched.
    overrides = {"utility_balance": MPESA_FLOAT_KES.amount_minor // 100}
    prefix = f"penpay-test:{secrets.token_hex(4)}:"
    async with review_stack(database_url, REDIS_URL, prefix, mpesa_overrides=overrides) as review:
        services = discover_services(packages_for("testing"))
        app = build_app(services, review.api.server.address, config=BridgeConfig())
        runner, port = await start_server(app, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}"
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                try:
                    async with aiohttp.ClientSession(base_url=url) as http:
                        yield Console(review, url, http, browser)
                finally:
                    await browser.close()
        finally:
            await runner.cleanup()

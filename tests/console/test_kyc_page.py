"""KYC attestation under four-eyes through the HTTP bridge and the console's KYC page: the real
API on MariaDB, the bridge in front of it over TCP, Debian's Chromium driven by Playwright. One
operator proposes, the same person cannot approve, a different approver reveals (audited) and
approves; the names never show unmasked in a list or a JSON answer."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from sqlalchemy import select

from domain.shared.clock import FixedClock
from domain.shared.ids import UserId
from domain.user.deriv_login_id import DerivLoginId
from penpay import bootstrap
from penpay.auth.v1 import auth_pb2, auth_pb2_grpc
from penpay.settings import Settings
from penpay.wiring.api import Api, build_api
from penpay_api.auth import RoleAwareAccessTokens
from penpay_api.http import BridgeConfig, build_app, discover_services, start_server
from penpay_api.http.discovery import packages_for
from persistence.tables import audit_logs
from security.access_tokens import SigningKey
from security.notify import DevelopmentNotifier
from security.passwords import FAST_FOR_TESTS, Argon2idHasher
from security.rate_limit import InProcessRateLimiter
from tests.console.conftest import AXE, CHROMIUM, SCREENSHOTS

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SIGNING_KEY = SigningKey.generate("kyc-console-k1")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # tokens are issued and checked as of this moment
FIRST, LAST = "Carolyne", "Njeri"


@dataclass
class World:
    api: Api
    core: bootstrap.Core
    url: str
    http: aiohttp.ClientSession
    browser: Any
    auth: auth_pb2_grpc.AuthServiceStub

    def token(self, name: str, *roles: str) -> str:
        token, _ = self.api.tokens.issue_operator_token(operator=name, now=NOW, roles=roles)
        return token

    async def rest_user(self, nickname: str) -> str:
        reply = await self.auth.Register(
            auth_pb2.RegisterRequest(
                email=f"kyc{secrets.token_hex(5)}@example.co.ke",
                phone_number=f"+2547{secrets.randbelow(10**8):08d}",
                password="correct horse battery 9",
            )
        )
        async with self.core.unit_of_work() as uow:
            user = await uow.users.get(UserId.from_str(reply.user_id))
            assert user is not None
            user.bind_deriv_account(DerivLoginId.rest(nickname), now=NOW)
            await uow.users.save(user)
            await uow.commit()
        return str(reply.user_id)

    async def kyc_first_name(self, user_id: str) -> str | None:
        async with self.core.unit_of_work() as uow:
            user = await uow.users.get(UserId.from_str(user_id))
        assert user is not None
        return None if user.kyc is None else user.kyc.first_name

    async def page_for(self, token: str) -> Any:
        context = await self.browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await page.goto(f"{self.url}/ops/login")
        await page.get_by_label("Staff access token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{self.url}/ops/")
        return page


@pytest.fixture
async def world(fresh_mariadb_url: str) -> AsyncIterator[World]:
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: scripts/services.sh installs it (apt-get install chromium)")
    settings = Settings(
        app_env="testing", database_url=fresh_mariadb_url, redis_url=None, grpc_addr="127.0.0.1:0",
        gateway_addr="127.0.0.1:9",
    )  # fmt: skip
    core = bootstrap.bootstrap(settings, clock=FixedClock(NOW), pool_size=5)
    hasher = Argon2idHasher(FAST_FOR_TESTS)
    api = build_api(
        core,
        metrics_addr=None,
        tokens=RoleAwareAccessTokens([SIGNING_KEY]),
        hasher=hasher,
        notifier=DevelopmentNotifier(),
        rate_limiter=InProcessRateLimiter(),
        payments=None,
    )
    await api.server.start()
    channel = grpc.aio.insecure_channel(api.server.address)
    app = build_app(discover_services(packages_for("testing")), api.server.address, config=BridgeConfig())
    runner, port = await start_server(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}"
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                async with aiohttp.ClientSession(base_url=url) as http:
                    yield World(api, core, url, http, browser, auth_pb2_grpc.AuthServiceStub(channel))
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
        await channel.close()
        await api.close()
        await core.close()
        hasher.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


async def test_the_bridge_answers_attestations_masked_and_keeps_four_eyes(world: World) -> None:
    user_id = await world.rest_user("carol_n")
    body = {
        "user_id": user_id,
        "identity": {
            "first_name": FIRST,
            "last_name": LAST,
            "date_of_birth": "1991-03-14",
            "residence": "ke",
        },
        "evidence": "TICKET-7",
    }
    viewer = bearer(world.token("vera", "viewer"))
    async with world.http.post("/v1/ops/kyc_attestations", json=body, headers=viewer) as refused:
        assert refused.status == 403
        assert (await refused.json())["details"][0]["reason"] == "ROLE_REQUIRED"
    olga = bearer(world.token("olga", "operator", "approver"))
    async with world.http.post("/v1/ops/kyc_attestations", json=body, headers=olga) as proposed:
        assert proposed.status == 200, await proposed.text()
        attestation = (await proposed.json())["attestation"]
    assert attestation["identity"]["first_name"] == "C***" and FIRST not in str(attestation)
    path = f"/v1/ops/kyc_attestations/{attestation['attestation_id']}"
    async with world.http.get("/v1/ops/kyc_attestations", headers=viewer) as listed:
        text = await listed.text()
    assert listed.status == 200 and attestation["attestation_id"] in text and FIRST not in text
    async with world.http.post(f"{path}:approve", json={}, headers=olga) as own:
        assert own.status == 403
        assert (await own.json())["details"][0]["reason"] == "FOUR_EYES_REQUIRED"
    amos = bearer(world.token("amos", "approver"))
    async with world.http.post(
        f"{path}:reject", json={"reason": "photo unreadable"}, headers=amos
    ) as rejected:
        assert rejected.status == 200
        assert (await rejected.json())["attestation"]["status"] == "REJECTED"
    assert await world.kyc_first_name(user_id) is None


async def test_two_people_attest_a_users_kyc_in_the_browser(world: World) -> None:
    from playwright.async_api import expect

    user_id = await world.rest_user("dan_k")
    olga = await world.page_for(world.token("olga", "operator", "approver"))
    await olga.get_by_role("link", name="KYC attestations").click()
    await expect(olga.get_by_role("heading", name="KYC attestations", exact=True)).to_be_visible()
    await olga.get_by_label("User id").fill(user_id)
    await olga.get_by_label("First name, as on the document").fill(FIRST)
    await olga.get_by_label("Last name, as on the document").fill(LAST)
    await olga.get_by_label("Date of birth").fill("1991-03-14")
    await olga.get_by_label("Where the documents are (ticket or document id)").fill("TICKET-8")
    await olga.get_by_role("button", name="Propose attestation").click()
    await expect(olga.get_by_role("status")).to_have_text("Proposed: waiting for a different approver.")
    rows = olga.get_by_test_id("attestations")
    await expect(rows).to_contain_text("C*** N***")
    assert FIRST not in await rows.inner_text()
    await olga.get_by_role("button", name="Approve C*** N***").click()  # her own: refused
    await expect(olga.get_by_role("alert")).to_contain_text("someone other than its proposer")
    assert await world.kyc_first_name(user_id) is None

    amos = await world.page_for(world.token("amos", "approver"))
    await amos.goto(f"{world.url}/ops/kyc")
    await amos.get_by_label("Why reveal (audited)").fill("comparing with TICKET-8")
    await amos.get_by_role("button", name="Reveal C*** N***").click()
    await expect(amos.get_by_test_id("revealed")).to_contain_text(f"{FIRST} {LAST}")
    await amos.evaluate(AXE.read_text())
    violations = await amos.evaluate("axe.run(document, {resultTypes: ['violations']})")
    assert [v["id"] for v in violations["violations"] if v["impact"] in ("serious", "critical")] == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await amos.screenshot(path=str(SCREENSHOTS / "kyc.png"), full_page=True)
    await amos.get_by_role("button", name="Approve C*** N***").click()
    await expect(amos.get_by_role("status")).to_have_text("Approved: the user's KYC snapshot is stored.")
    await expect(amos.get_by_test_id("attestations")).to_contain_text("No attestation waits for a decision.")
    assert await world.kyc_first_name(user_id) == FIRST

    async with world.core.engine.connect() as connection:
        rows_ = (
            await connection.execute(
                select(audit_logs.c.actor, audit_logs.c.action)
                .where(audit_logs.c.subject_id == user_id)
                .order_by(audit_logs.c.id)
            )
        ).all()
    kyc = [(r.actor, r.action) for r in rows_ if r.action.startswith(("kyc.", "ops.", "KycAttested"))]
    assert kyc == [
        ("operator:olga", "kyc.attestation_proposed"),
        ("operator:olga", "kyc.attestation_approval_refused"),
        ("operator:amos", "ops.pii_revealed"),
        ("operator:amos", "KycAttestedByOperator"),
    ]

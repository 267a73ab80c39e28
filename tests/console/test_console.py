"""The ops console in Chromium: two operators work a NEEDS_REVIEW deposit with four eyes, the page
shows the refund completed and the audit records; a user's token is refused; no serious
accessibility violation (axe-core)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, timedelta

import aiohttp
import pytest

from domain.payments.status import TransactionStatus as S
from domain.shared.clock import FixedClock
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency, Money
from penpay.ops.v1 import ops_pb2 as pb
from penpay_api.console.views import cents
from persistence.auditor_queries import float_balance
from tests.auditor.test_auditor import _answer_balance as answer_balance
from tests.console.conftest import ROOT, Console
from tests.ops.test_review_queue import refused_deposit, user_token
from workers.auditor import Auditor

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


def usd(amount: int) -> str:
    return cents(amount, "USD")


def kes(amount: int) -> str:
    return cents(amount, "KES")


def staff_token(console: Console, name: str, *roles: str) -> str:
    now = console.review.core.clock.now()  # the API's clock
    token, _ = console.review.tokens.issue_operator_token(operator=name, now=now, roles=roles)
    return token


async def test_two_operators_refund_a_refused_deposit_in_the_browser(console: Console) -> None:
    from playwright.async_api import expect

    stack = console.review.stack
    user = await stack.user(phone="254712345670")
    for _ in range(2):  # some finished deposits for the dashboard
        done = await stack.settle((await stack.deposit(user, 2_600)).id)
        assert done.status is S.COMPLETED, done.failure_reason
    refused = await refused_deposit(console.review)
    tx_id = str(refused)
    # The API's clock (fixed in these tests) set to when the stack, on its own clock, put the
    # deposit under review (never ahead of it: tokens are issued as of this clock): the
    # dashboard's ages and its last 24 hours then cover these payments.
    under_review = (await stack.get(refused)).updated_at
    assert under_review is not None
    clock = console.review.core.clock
    assert isinstance(clock, FixedClock)  # the review stack's core runs on a fixed clock
    clock.set(under_review)
    # The dashboard's "oldest" comes from the report: when the oldest of each status was created.
    report = await console.review.ops.GetReconciliationReport(
        pb.GetReconciliationReportRequest(),
        metadata=(("authorization", f"Bearer {staff_token(console, 'vera', 'viewer')}"),),
    )
    row = next(r for r in report.transactions if r.status == "NEEDS_REVIEW")
    created = (await stack.get(refused)).created_at
    assert row.oldest_created_at.ToDatetime(tzinfo=UTC).replace(microsecond=0) == created.replace(
        microsecond=0
    )

    # The continuous auditor has looked once, as of the same moment (its verdicts are on the
    # dashboard): Deriv's agent balance USD 5 above the ledger's float (within tolerance), and
    # M-Pesa's last Account Balance answer (taken in the same second) KES 50,000 below it (a mismatch).
    answered = under_review.replace(microsecond=0)
    async with stack.engine.connect() as conn:
        deriv_ledger = await float_balance(conn, AccountKind.DERIV_AGENT_FLOAT, "USD")
        mpesa_ledger = await float_balance(conn, AccountKind.MPESA_FLOAT, "KES", at=answered)
    await answer_balance(stack.engine, mpesa_ledger - 50_000_00, answered)

    async def deriv_balance() -> Money:
        return Money(deriv_ledger + 5_00, Currency.USD)

    auditor = Auditor(stack.engine, clock=FixedClock(under_review), deriv_balance=deriv_balance)
    await auditor.run_once()

    olga = await console.page_for(staff_token(console, "olga", "operator", "approver"))
    await expect(olga.get_by_role("heading", name="Needs a person")).to_be_visible()
    await expect(olga.get_by_test_id("verdicts")).to_contain_text("stale_transactions")
    await expect(olga.locator("p.big")).to_have_text("1")
    await expect(olga.get_by_test_id("completed-24h")).to_contain_text("2 completed in the last 24 hours")
    # In flight per hour: the three deposits ran within the last hour, none before it.
    await expect(olga.get_by_test_id("in-flight-24h")).to_have_text(
        "In flight over the last 24 hours: at most 3 in an hour, 3 in the last hour"
    )
    hours = olga.get_by_role("img", name="Transactions in flight during each hour, the last 24 hours")
    assert await hours.locator("rect > title").count() == 24
    assert await hours.locator("rect > title").last.text_content() == (
        f"{under_review - timedelta(hours=1):%Y-%m-%d %H:%M} UTC: 3"
    )
    assert await hours.locator("rect > title").first.text_content() == (
        f"{under_review - timedelta(hours=24):%Y-%m-%d %H:%M} UTC: 0"
    )
    # Each float beside the provider's balance as the auditor saw it, when, and the difference.
    deriv_row = olga.get_by_test_id("float-DERIV_AGENT_FLOAT")
    await expect(deriv_row).to_contain_text(usd(deriv_ledger + 5_00))
    await expect(deriv_row).to_contain_text(f"{under_review:%Y-%m-%d %H:%M:%S} UTC")
    await expect(olga.get_by_test_id("difference-DERIV_AGENT_FLOAT")).to_have_text("USD -5.00")
    await expect(deriv_row).not_to_have_class("warn")
    mpesa_row = olga.get_by_test_id("float-MPESA_FLOAT")
    await expect(mpesa_row).to_contain_text(kes(mpesa_ledger - 50_000_00))
    await expect(mpesa_row).to_contain_text(f"{answered:%Y-%m-%d %H:%M:%S} UTC")
    await expect(olga.get_by_test_id("difference-MPESA_FLOAT")).to_have_text("KES 50,000.00 · MISMATCH")
    await expect(mpesa_row).to_have_class("warn")
    assert await console.axe(olga) == []
    dashboard = await console.screenshot(olga, "dashboard")
    if os.environ.get("PENPAY_UPDATE_README_SCREENSHOT"):
        shutil.copyfile(dashboard, ROOT / "docs" / "ops-console.png")

    await olga.get_by_role("link", name="Review queue", exact=True).click()
    await olga.get_by_role("link", name=tx_id).click()
    await expect(olga.get_by_test_id("status")).to_have_text("NEEDS_REVIEW")
    assert await console.axe(olga) == []
    await olga.get_by_label("REFUND").check()
    await olga.get_by_label("Reason", exact=True).fill("Deriv refuses this client: refund the KES")
    await olga.get_by_role("button", name="Propose").click()
    await expect(olga.get_by_role("status")).to_have_text("Proposed: waiting for an approver.")
    await expect(olga.get_by_test_id("action-status")).to_have_text("PROPOSED")
    # Four eyes: the proposer cannot approve, whatever roles the token holds.
    await olga.get_by_role("button", name="Approve").click()
    await expect(olga.get_by_role("alert")).to_contain_text("someone other than its proposer")
    await expect(olga.get_by_test_id("action-status")).to_have_text("PROPOSED")
    await console.screenshot(olga, "proposed")

    amos = await console.page_for(staff_token(console, "amos", "approver"))
    await amos.goto(f"{console.url}/ops/transactions/{tx_id}")
    await amos.get_by_role("button", name="Approve").click()
    await expect(amos.get_by_test_id("action-status")).to_have_text("EXECUTED")

    done = await stack.settle(refused, until={S.REVERSED})  # the saga pays the refund (B2C)
    assert done.status is S.REVERSED
    # The page keeps itself up to date while the refund is in flight (htmx polling).
    await expect(amos.get_by_test_id("status")).to_have_text("REVERSED", timeout=30_000)
    audit = amos.get_by_test_id("audit")
    await expect(audit).to_contain_text("review.proposed")
    await expect(audit).to_contain_text("review.approved")
    await expect(audit).to_contain_text("operator:amos")
    await expect(audit).to_contain_text("operator:olga")
    ledger = amos.get_by_test_id("ledger")
    await expect(ledger).to_contain_text("MPESA_FLOAT")
    await expect(ledger).to_contain_text("deposit refunded: B2C refund to the customer")
    assert await console.axe(amos) == []
    await console.screenshot(amos, "refunded")

    # The number stays masked until someone says why they need it; the reveal is audited.
    await amos.get_by_label("Why reveal the customer's number (audited)").fill("call the customer back")
    await amos.get_by_role("button", name="Reveal phone number").click()
    await expect(amos.get_by_test_id("revealed-phone")).to_have_text("+254712345678")
    await expect(audit).to_contain_text("ops.pii_revealed")
    await expect(audit).to_contain_text("call the customer back")

    # The customer calls with the receipt of their payment: the search box finds the story.
    assert done.mpesa_request is not None and done.mpesa_request.mpesa_receipt_number
    await amos.goto(f"{console.url}/ops/")
    await amos.get_by_label("Search transactions").fill(done.mpesa_request.mpesa_receipt_number)
    await amos.get_by_role("button", name="Find").click()
    await amos.wait_for_url(f"{console.url}/ops/transactions/{tx_id}")
    await expect(amos.get_by_test_id("status")).to_have_text("REVERSED")
    await amos.get_by_label("Search transactions").fill("0712***678")  # masked, as Safaricom shows it
    await amos.get_by_role("button", name="Find").click()
    await amos.wait_for_url(f"{console.url}/ops/transactions/{tx_id}")

    await amos.get_by_role("button", name="Sign out").click()
    await amos.wait_for_url(f"{console.url}/ops/login")
    await amos.goto(f"{console.url}/ops/")
    assert amos.url.endswith("/ops/login")  # the session is gone


async def test_a_user_token_is_refused_the_console(console: Console) -> None:
    from playwright.async_api import expect

    token = await user_token(console.review)
    page = await console.page_for(None)
    await page.context.add_cookies([{"name": "penpay_access", "value": token, "url": console.url}])
    response = await page.goto(f"{console.url}/ops/")
    assert response is not None and response.status == 403
    await expect(page.get_by_role("heading", name="Not for this account")).to_be_visible()
    await console.screenshot(page, "refused")

    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    async with console.http.get("/ops/queue", headers=headers) as answer:
        assert answer.status == 403
        assert answer.content_type == "application/problem+json"
        problem = await answer.json()
        assert problem["status"] == 403 and problem["title"]
    # Nor can it sign in with it.
    login = await console.page_for(None)
    await login.goto(f"{console.url}/ops/login")
    await login.get_by_label("Staff access token").fill(token)
    await login.get_by_role("button", name="Sign in").click()
    await expect(login.get_by_role("alert")).to_be_visible()
    assert login.url.endswith("/ops/login")
    assert not [c for c in await login.context.cookies() if c["name"] == "penpay_access"]


async def test_docs_render_the_openapi_document_under_a_strict_policy(console: Console) -> None:
    from playwright.async_api import expect

    page = await console.page_for(None)
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    response = await page.goto(f"{console.url}/docs")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    await expect(page.get_by_text("/v1/ops/review_queue", exact=True)).to_be_visible(timeout=20_000)
    await expect(page.get_by_text("OpsService").first).to_be_visible()
    assert refused == []
    await console.screenshot(page, "docs")


async def test_console_pages_carry_the_security_headers_and_csrf_rule(console: Console) -> None:
    token = staff_token(console, "vera", "viewer")
    async with console.http.get("/ops/login") as login:
        assert login.status == 200
        for name, value in {
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
        }.items():
            assert login.headers[name] == value
        csp = login.headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
    cookies = {"penpay_access": token, "penpay_csrf": "c" * 43}
    async with aiohttp.ClientSession(base_url=console.url, cookies=cookies) as http:
        async with http.get("/ops/", headers={"Accept": "text/html"}) as page:
            assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
        # A cookie-authenticated action without the CSRF header is refused before the API is asked.
        async with http.post("/ops/actions/x/approve", data={"transaction_id": "x"}) as refused:
            assert refused.status == 403
            assert "CSRF" in await refused.text()
        async with http.post("/ops/login", data={"token": token}) as login_csrf:
            assert login_csrf.status == 403
        # With the header: the API answers (a viewer may not approve), and a bad id is a 404 page.
        csrf = {"X-CSRF-Token": "c" * 43}
        async with http.post("/ops/actions/x/approve", data={"transaction_id": "x"}, headers=csrf) as bad:
            assert bad.status == 404 and "No such transaction" in await bad.text()

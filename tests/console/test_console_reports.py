"""The console's later pages in Chromium, on one stack for the module: a reconciliation run made
here listed with its items (filtered by class) and downloaded as CSV; the continuous auditor's
verdicts on the dashboard and their history; a paybill payment in suspense given to its owner with
four eyes; axe-core finds nothing serious on these pages; a user's token is refused them all."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import aiohttp
import grpc
import pytest
from sqlalchemy import func, select

from application.reconciliation.export import CSV_COLUMNS
from application.reconciliation.service import Reconciler, RunReport
from deriv_gateway.statement_client import GatewayDerivReads
from domain.payments.status import TransactionStatus as S
from domain.shared.clock import FixedClock
from domain.shared.ids import TransactionId
from mpesa_adapter.client import DarajaClient
from mpesa_adapter.pull_reads import PullReads
from mpesa_adapter.reconciliation_reads import DarajaReconciliationReads
from penpay.ops.v1 import ops_pb2 as pb
from penpay.reconcile.wiring import ProviderReadsOverApis
from persistence.reconciliation import SqlReconciliationStore
from persistence.tables import transactions
from tests.console.conftest import Console
from tests.console.test_console import staff_token
from tests.mpesa_adapter.conftest import inbox_on
from tests.ops.test_paybill_suspense import _suspense_payment as suspense_payment
from tests.ops.test_review_more import stuck_payout
from tests.ops.test_review_queue import user_token
from workers.auditor import Auditor

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def reconcile(console: Console) -> RunReport:
    """The reconciliation service against this stack's simulators, through their provider APIs, over
    a window from a minute before the first transaction to a minute after the last."""
    stack = console.review.stack
    async with stack.engine.connect() as conn:
        first, last = (
            await conn.execute(
                select(func.min(transactions.c.created_at), func.max(transactions.c.updated_at))
            )
        ).one()
    start, end = first - timedelta(minutes=1), last + timedelta(minutes=1)
    channel = grpc.aio.insecure_channel(stack.gateway.address)
    daraja = DarajaClient(stack.daraja_config)
    try:
        reads = ProviderReadsOverApis(
            DarajaReconciliationReads(
                daraja,
                stack.engine,
                inbox=inbox_on(stack.engine, stack.clock),
                clock=stack.clock,
                pulls=PullReads(
                    daraja, nominated_number="254708374149", callback_url=f"{stack.callbacks.base_url}/pull"
                ),
                balance_wait=10.0,
            ),
            GatewayDerivReads(channel, timeout=10.0),
        )
        return await Reconciler(reads, SqlReconciliationStore(stack.engine)).run(start, end, now=end)
    finally:
        await channel.close()
        await daraja.close()


async def test_a_reconciliation_run_is_listed_with_its_items_and_downloads_as_csv(console: Console) -> None:
    from playwright.async_api import expect

    stack = console.review.stack
    user = await console.customer()
    deposit = await stack.deposit(user, 2_600)
    assert (await stack.settle(deposit.id)).status is S.COMPLETED
    report = await reconcile(console)
    assert report.status == "SUCCEEDED" and report.unexplained == 0, report
    total = sum(report.counts.values())

    olga = await console.page_for(staff_token(console, "olga", "viewer"))
    # The dashboard names the last run.
    await expect(olga.get_by_test_id("last-run")).to_contain_text(f"SUCCEEDED, {total} items, 0 unexplained")
    await olga.get_by_role("link", name="Reconciliation", exact=True).click()
    await expect(olga.get_by_test_id("runs")).to_contain_text("SUCCEEDED")
    assert await console.axe(olga) == []
    await olga.get_by_role("link", name=report.run_id).click()
    items = olga.get_by_test_id("items")
    await expect(items).to_contain_text("MATCHED")
    await expect(items).to_contain_text(str(deposit.id))
    await expect(olga.get_by_test_id("run-status")).to_have_text("SUCCEEDED")
    assert await console.axe(olga) == []
    await console.screenshot(olga, "reconciliation-run")
    # Filtered by a class the run did not find: nothing listed.
    await olga.get_by_label("Class").select_option("AMOUNT_MISMATCH")
    await olga.get_by_role("button", name="Show").click()
    await expect(items).to_contain_text("No items of class AMOUNT_MISMATCH.")
    await olga.get_by_label("Class").select_option("MATCHED")
    await olga.get_by_role("button", name="Show").click()
    await expect(items).to_contain_text(str(deposit.id))

    async with olga.expect_download() as download_info:
        await olga.get_by_role("link", name="Download CSV (MATCHED)").click()
    download = await download_info.value
    assert download.suggested_filename == f"reconciliation-{report.run_id}-matched.csv"
    rows = list(csv.reader(io.StringIO((await download.path()).read_text())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) - 1 == report.counts["MATCHED"]
    assert {r[2] for r in rows[1:]} == {"MATCHED"}
    assert any(r[4] == str(deposit.id) for r in rows[1:])

    # Every class, as a JSON client would ask: never cached, an attachment.
    cookies = {"penpay_access": staff_token(console, "vera", "viewer")}
    async with aiohttp.ClientSession(base_url=console.url, cookies=cookies) as http:
        async with http.get(f"/ops/reconciliation/{report.run_id}/items.csv") as answer:
            assert answer.status == 200
            assert answer.headers["Cache-Control"] == "no-store"
            assert answer.content_type == "text/csv"
            assert answer.headers["Content-Disposition"].startswith("attachment;")
            every = list(csv.reader(io.StringIO(await answer.text())))
        assert len(every) - 1 == total
        async with http.get("/ops/reconciliation/not-a-run/items.csv") as bad:
            assert bad.status == 404
    missing = await olga.goto(f"{console.url}/ops/reconciliation/{deposit.id}")  # an id, not a run's
    assert missing is not None and missing.status == 404
    await expect(olga.get_by_role("heading", name="No such reconciliation run")).to_be_visible()
    assert await console.axe(olga) == []


async def test_the_dashboard_shows_the_auditors_verdicts_and_a_page_their_history(console: Console) -> None:
    from playwright.async_api import expect

    stack = console.review.stack
    async with stack.engine.connect() as conn:
        last = (await conn.execute(select(func.max(transactions.c.updated_at)))).scalar_one()
    auditor = Auditor(stack.engine, clock=FixedClock(last + timedelta(minutes=1)))
    first = await auditor.run_once()
    second = await auditor.run_once()
    assert not any(v.failed for v in first + second), [v.summary for v in second if v.failed]

    vera = await console.page_for(staff_token(console, "vera", "viewer"))
    verdicts = vera.get_by_test_id("verdicts")
    await expect(verdicts).to_contain_text("ledger_sums")
    await expect(verdicts).to_contain_text("debits equal credits in every currency")
    # The latest run only: one row per check.
    assert await verdicts.locator("tbody tr").count() == len(second)
    assert await console.axe(vera) == []
    await console.screenshot(vera, "dashboard-auditor")

    await vera.get_by_role("link", name="Earlier verdicts").click()
    await expect(vera.get_by_role("heading", name="Continuous auditor")).to_be_visible()
    assert await vera.get_by_test_id("verdicts").count() == 2  # both runs
    await vera.get_by_label("Check").select_option("audit_chain")
    await vera.get_by_role("button", name="Show").click()
    await expect(vera.get_by_test_id("verdicts").first).to_contain_text("audit_chain")
    assert await vera.get_by_test_id("verdicts").first.locator("tbody tr").count() == 1
    assert await console.axe(vera) == []


async def test_a_suspense_payment_goes_to_its_owner_with_four_eyes(console: Console) -> None:
    from playwright.async_api import expect

    stack = console.review.stack
    user = await console.customer()
    reference = await stack.paybill.reference_for(user)
    trans_id = await suspense_payment(console.review, "0712345678", 2_600)  # their phone, not the reference

    olga = await console.page_for(staff_token(console, "olga", "operator", "approver"))
    await olga.get_by_role("link", name="Paybill suspense").click()
    table = olga.get_by_test_id("suspense")
    await expect(table).to_contain_text(trans_id)
    await expect(table).to_contain_text("0712***678")  # what the customer typed, masked
    await expect(table).not_to_contain_text("0712345678")
    assert await console.axe(olga) == []
    await olga.get_by_label(f"Deposit reference of {trans_id}").fill(reference)
    await olga.get_by_label("Why (audited)").fill("the customer sent their reference by SMS")
    await olga.get_by_role("button", name=f"Propose {trans_id}").click()
    await expect(olga.get_by_role("status")).to_have_text("Proposed: waiting for an approver.")
    await expect(olga.get_by_test_id(f"proposal-{trans_id}")).to_contain_text("operator:olga")
    # Four eyes: not the proposer.
    await olga.get_by_role("button", name=f"Approve {trans_id}").click()
    await expect(olga.get_by_role("alert")).to_be_visible()
    await expect(table).to_contain_text(trans_id)
    assert await console.axe(olga) == []
    await console.screenshot(olga, "paybill-proposed")

    amos = await console.page_for(staff_token(console, "amos", "approver"))
    await amos.goto(f"{console.url}/ops/paybill")
    await amos.get_by_role("button", name=f"Approve {trans_id}").click()
    status = amos.get_by_role("status")
    await expect(status).to_contain_text("Approved. It is now deposit")
    await expect(amos.get_by_test_id("suspense")).not_to_contain_text(trans_id)
    match = re.search(r"deposit ([0-9a-f-]{36})", await status.inner_text())
    assert match is not None
    done = await stack.settle(TransactionId.from_str(match.group(1), field="transaction_id"))
    assert done.status is S.COMPLETED and done.user_id == user


async def test_a_suspense_payment_nobody_owns_is_refunded_to_its_payer_with_four_eyes(
    console: Console,
) -> None:
    from playwright.async_api import expect

    stack = console.review.stack
    trans_id = await suspense_payment(console.review, "no such account", 1_500)

    olga = await console.page_for(staff_token(console, "olga", "operator", "approver"))
    await olga.goto(f"{console.url}/ops/paybill")
    await olga.get_by_label(f"Why refund {trans_id} (audited)").fill("the payer called: wrong paybill")
    await olga.get_by_role("button", name=f"Propose refund of {trans_id}").click()
    await expect(olga.get_by_role("status")).to_have_text("Refund proposed: waiting for an approver.")
    await expect(olga.get_by_test_id(f"refund-{trans_id}")).to_contain_text("PROPOSED")
    await olga.get_by_role("button", name=f"Approve refund of {trans_id}").click()  # four eyes
    await expect(olga.get_by_role("alert")).to_be_visible()
    assert await console.axe(olga) == []

    amos = await console.page_for(staff_token(console, "amos", "approver"))
    await amos.goto(f"{console.url}/ops/paybill")
    await amos.get_by_role("button", name=f"Approve refund of {trans_id}").click()
    await expect(amos.get_by_role("status")).to_contain_text("Refund ACCEPTED")
    await stack.mpesa_sim.drain()
    await amos.goto(f"{console.url}/ops/paybill")
    await expect(amos.get_by_test_id("suspense")).not_to_contain_text(trans_id)
    reversals = (await stack.mpesa_books())["reversals"]["transactions"]
    assert [(r["original_trans_id"], r["reversed"]) for r in reversals] == [(trans_id, True)]


async def test_a_stuck_withdrawal_is_completed_on_its_payout_receipt(console: Console) -> None:
    """The proposal form offers what the API allows for a withdrawal whose payout's outcome was
    lost (resolve on an M-Pesa receipt, or retry) and sends the receipt as the evidence."""
    from playwright.async_api import expect

    tx_id, _, receipt = await stuck_payout(console.review, await console.customer())
    olga = await console.page_for(staff_token(console, "olga", "operator"))
    await olga.goto(f"{console.url}/ops/transactions/{tx_id}")
    await expect(olga.get_by_role("radio", name="RESOLVE_COMPLETED")).to_be_visible()
    await expect(olga.get_by_role("radio", name="RETRY")).to_be_visible()
    await expect(olga.get_by_role("radio", name="REFUND")).to_have_count(0)  # not for a withdrawal
    await expect(olga.get_by_label("Deriv transaction id", exact=False)).to_have_count(0)
    assert await console.axe(olga) == []
    await olga.get_by_role("radio", name="RESOLVE_COMPLETED").check()
    await olga.get_by_label("Reason", exact=True).fill("M-Pesa's statement shows the payout")
    await olga.get_by_label("M-Pesa receipt of the payout", exact=False).fill(receipt.lower())
    await olga.get_by_role("button", name="Propose").click()
    await expect(olga.get_by_role("status")).to_have_text("Proposed: waiting for an approver.")
    await expect(olga.get_by_role("cell", name=f"RESOLVE_COMPLETED ({receipt})")).to_be_visible()

    amos = await console.page_for(staff_token(console, "amos", "approver"))
    await amos.goto(f"{console.url}/ops/transactions/{tx_id}")
    await amos.get_by_role("button", name="Approve").click()
    await expect(amos.get_by_test_id("action-status")).to_have_text("EXECUTED")
    await expect(amos.get_by_test_id("status")).to_have_text("COMPLETED")


async def test_a_user_token_is_refused_the_new_pages(console: Console) -> None:
    token = await user_token(console.review)
    runs = await console.review.ops.ListReconciliationRuns(
        pb.ListReconciliationRunsRequest(),
        metadata=(("authorization", f"Bearer {staff_token(console, 'vera', 'viewer')}"),),
    )
    run_id = runs.runs[0].run_id
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    for path in (
        "/ops/reconciliation",
        f"/ops/reconciliation/{run_id}",
        f"/ops/reconciliation/{run_id}/items.csv",
        "/ops/auditor",
        "/ops/paybill",
    ):
        async with console.http.get(path, headers=headers) as answer:
            assert answer.status == 403, path
            assert answer.content_type == "application/problem+json", path
    page = await console.page_for(None)
    await page.context.add_cookies([{"name": "penpay_access", "value": token, "url": console.url}])
    response = await page.goto(f"{console.url}/ops/reconciliation/{run_id}/items.csv")
    assert response is not None and response.status == 403

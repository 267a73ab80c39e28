"""The reconciliation run page in Chromium: an operator closes an item queued for review with a
reason (no money moves), the page shows it RESOLVED with their name; a viewer's attempt is refused
on the page and changes nothing; an item whose money is in SUSPENSE offers no close but a write-off,
which its proposer cannot approve and a second person does."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from application.reconciliation.ports import Item
from application.reconciliation.rules import Amount, ItemClass
from persistence.reconciliation import SqlReconciliationStore
from tests.console.conftest import Console
from tests.console.test_console import staff_token

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def test_an_operator_closes_a_queued_item_on_the_run_page(console: Console) -> None:
    from playwright.async_api import expect

    store = SqlReconciliationStore(console.review.stack.engine)
    now = console.review.core.clock.now()
    run_id = await store.start_run("cli", now - timedelta(hours=1), now, now)
    key = f"c2b:FEE{uuid.uuid4().hex[:10].upper()}"
    held = f"deriv:{uuid.uuid4().int % 10**12}"
    await store.record_item(
        run_id,
        Item(
            key=key,
            source="mpesa_c2b",
            item_class=ItemClass.MISSING_AT_PROVIDER,
            detail="PenPay holds a receipt M-Pesa does not list",
            provider_ref="FEE1",
            provider_amount=Amount(35_00, "KES"),
        ),
        now,
    )
    await store.record_item(
        run_id,
        Item(
            key=held,
            source="deriv_statement",
            item_class=ItemClass.UNKNOWN_AT_PENPAY,
            detail="money at Deriv with no PenPay transaction",
            provider_ref=held.removeprefix("deriv:"),
            provider_amount=Amount(5_00, "USD"),
            float_kind="DERIV_AGENT_FLOAT",
        ),
        now,
    )
    await store.finish_run(
        run_id, "SUCCEEDED", {"MISSING_AT_PROVIDER": 1, "UNKNOWN_AT_PENPAY": 1}, 2, None, now
    )

    vera = await console.page_for(staff_token(console, "vera", "viewer"))
    await vera.goto(f"{console.url}/ops/reconciliation/{run_id}")
    await vera.get_by_label(f"Why close {key} (no money moves; audited)").fill("provider fee")
    await vera.get_by_role("button", name=f"Close {key}").click()
    await expect(vera.get_by_role("alert")).to_be_visible()
    await expect(vera.get_by_test_id(f"review-{key}")).to_contain_text("OPEN")

    olga = await console.page_for(staff_token(console, "olga", "operator", "approver"))
    await olga.goto(f"{console.url}/ops/reconciliation/{run_id}")
    assert await olga.get_by_role("button", name=f"Close {held}").count() == 0  # a booking, not a note
    await olga.get_by_label(f"Why close {key} (no money moves; audited)").fill("Safaricom fee, ticket 123")
    await olga.get_by_role("button", name=f"Close {key}").click()
    await expect(olga.get_by_role("status")).to_have_text(f"Closed {key}.")
    review = olga.get_by_test_id(f"review-{key}")
    await expect(review).to_contain_text("RESOLVED")
    await expect(review).to_contain_text("closed by operator:olga: Safaricom fee, ticket 123")
    assert await olga.get_by_role("button", name=f"Close {key}").count() == 0
    assert await console.axe(olga) == []
    await console.screenshot(olga, "reconciliation-item-closed")

    # The item whose money is in SUSPENSE: a write-off, by two people.
    await olga.get_by_label(f"Why write off {held}'s suspense (two people; audited)").fill(
        "Deriv fee, ticket 9"
    )
    await olga.get_by_role("button", name=f"Propose write-off of {held}").click()
    await expect(olga.get_by_role("status")).to_have_text(
        f"Write-off of {held} proposed: waiting for an approver."
    )
    await olga.get_by_role("button", name=f"Approve write-off of {held}").click()
    await expect(olga.get_by_role("alert")).to_contain_text("proposer")
    await expect(olga.get_by_test_id(f"review-{held}")).to_contain_text("OPEN")
    amos = await console.page_for(staff_token(console, "amos", "approver"))
    await amos.goto(f"{console.url}/ops/reconciliation/{run_id}")
    await expect(amos.get_by_test_id(f"review-{held}")).to_contain_text("write-off proposed by operator:olga")
    await amos.get_by_role("button", name=f"Approve write-off of {held}").click()
    await expect(amos.get_by_role("status")).to_have_text(f"Written off {held}.")
    await expect(amos.get_by_test_id(f"review-{held}")).to_contain_text("RESOLVED")
    await expect(amos.get_by_test_id(f"review-{held}")).to_contain_text(
        "closed by operator:amos: Deriv fee, ticket 9"
    )
    assert await console.axe(amos) == []

"""Pull Transactions (register + query) between PenPay's Daraja client and the simulator, over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mpesa_adapter.pull_transactions import PullFailed
from tests.mpesa_adapter.conftest import Harness, phone

pytestmark = pytest.mark.integration

# The simulator's clock is fixed: the windows below never depend on when the test runs.
NOW = datetime(2026, 11, 5, 9, 0, tzinfo=UTC)
FIXED = {"clock": lambda: NOW, "callback_delay": 0.05}


async def customer_pays(h: Harness, msisdn: str, amount: int, reference: str = "") -> dict[str, Any]:
    """The customer's phone pays the paybill (validation skipped: this is about what M-Pesa lists)."""
    async with h.session.post(
        f"{h.sim.base_url}/__control__/c2b/pay",
        json={"phone": msisdn, "amount": amount, "account": reference, "validation": False},
    ) as response:
        assert response.status == 201, await response.text()
        paid = dict(await response.json())
    assert paid["status"] == "completed", paid
    return paid


async def register(h: Harness) -> None:
    await h.client.register_c2b_urls()  # a paybill takes payments once its C2B URLs are registered
    await h.client.pull_register(nominated_number="254708374149", callback_url="https://example.com/pull")


@pytest.mark.harness(sim_overrides=FIXED)
async def test_pull_lists_stk_and_paybill_payments_in_the_window(h: Harness) -> None:
    await register(h)
    _, checkout = await h.push(phone(), 150)
    await h.drain()
    paid = await customer_pays(h, phone(), 700, "ACC42")

    pulled = await h.client.pull_transactions(NOW - timedelta(hours=1), NOW + timedelta(minutes=1))

    by_receipt = {p.receipt: p for p in pulled if p.receipt is not None}
    assert len(by_receipt) == len(pulled), "every pulled payment carries its receipt"
    stk_receipt = h.sim.engine.books.stk[checkout].receipt
    assert stk_receipt is not None
    assert set(by_receipt) == {stk_receipt, paid["TransID"]}
    assert by_receipt[paid["TransID"]].amount_cents == 700_00
    assert by_receipt[paid["TransID"]].bill_reference == "ACC42"
    assert by_receipt[stk_receipt].amount_cents == 150_00
    # outside the window: nothing, and a "1000" answer with no rows is an empty list
    assert await h.client.pull_transactions(NOW - timedelta(hours=3), NOW - timedelta(hours=2)) == []


@pytest.mark.harness(sim_overrides=FIXED)
async def test_pull_pages_through_every_row(h: Harness) -> None:
    await register(h)
    for _ in range(105):  # more than one page of 100
        await customer_pays(h, phone(), 10)
    pulled = await h.client.pull_transactions(NOW - timedelta(hours=1), NOW)
    assert len({p.receipt for p in pulled}) == 105


@pytest.mark.harness(sim_overrides=FIXED)
async def test_a_failed_pull_answered_with_http_200_is_an_error_not_an_empty_list(h: Harness) -> None:
    await register(h)
    await customer_pays(h, phone(), 50)
    h.sim.add_fault("pull_failure", api="pull_query")
    with pytest.raises(PullFailed) as failed:
        await h.client.pull_transactions(NOW - timedelta(hours=1), NOW)
    assert failed.value.response_code == "1001"
    assert len(await h.client.pull_transactions(NOW - timedelta(hours=1), NOW)) == 1  # the fault was one


@pytest.mark.harness(sim_overrides=FIXED)
async def test_an_unregistered_shortcode_cannot_pull(h: Harness) -> None:
    with pytest.raises(PullFailed):
        await h.client.pull_transactions(NOW - timedelta(hours=1), NOW)


@pytest.mark.harness(sim_overrides=FIXED | {"mask_phone_numbers": True})
async def test_masked_numbers_come_as_shown(h: Harness) -> None:
    await register(h)
    msisdn = phone()
    await customer_pays(h, msisdn, 20)
    [pulled] = await h.client.pull_transactions(NOW - timedelta(hours=1), NOW)
    assert pulled.msisdn_shown.endswith("***") and pulled.msisdn_shown != msisdn


@pytest.mark.harness(sim_overrides=FIXED)
async def test_only_the_last_48_hours_are_kept(h: Harness) -> None:
    await register(h)
    await customer_pays(h, phone(), 20)
    # asked from a week back: what M-Pesa still keeps (today's payment) and nothing older
    pulled = await h.client.pull_transactions(NOW - timedelta(days=7), NOW)
    assert len(pulled) == 1

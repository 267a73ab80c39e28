"""Issue 17's reconciliation promises that had no test over real sockets: PenPay evidence the
provider does not have (at M-Pesa and at Deriv), the M-Pesa float against Account Balance (read
through Daraja's API), and the worker's alarm when its cursor fell behind what M-Pesa still lists."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from domain.shared.clock import FixedClock
from persistence.tables import ledger_postings, mpesa_requests
from tests.reconciliation.conftest import World, a_deposit_and_a_withdrawal
from workers.reconciliation import ReconcileWorker

pytestmark = pytest.mark.integration

SUSPENSE = ledger_postings.c.description.like("reconciliation suspense:%")


def classes(items: list[Any]) -> dict[str, str]:
    return {row.item_key: row.item_class for row in items}


async def test_a_receipt_penpay_holds_that_m_pesa_never_listed_is_missing_at_provider(world: World) -> None:
    deposit, _ = await a_deposit_and_a_withdrawal(world.stack)
    async with world.stack.engine.begin() as conn:  # evidence naming a payment M-Pesa never made
        await conn.execute(
            update(mpesa_requests)
            .where(mpesa_requests.c.transaction_id == deposit.id.value)
            .values(mpesa_receipt_number="ZZZ0000000")
        )
    report = await world.run()
    found = classes(await world.items(report))
    assert found["c2b:ZZZ0000000"] == "MISSING_AT_PROVIDER"
    # M-Pesa's own record of the real payment now names nothing PenPay holds: suspense, once
    real = [k for k, v in found.items() if k.startswith("c2b:") and k != "c2b:ZZZ0000000"]
    assert [found[k] for k in real] == ["UNKNOWN_AT_PENPAY"]
    # that suspense posting counts the payment in the float a second time: the float says so too
    floats = [r.item_class for r in await world.items(report) if r.source == "mpesa_float"]
    assert floats == ["FLOAT_MISMATCH"] and report.unexplained == 3
    assert await world.count(ledger_postings, SUSPENSE) == 1


async def test_an_m_pesa_float_that_is_not_the_utility_account_is_a_float_mismatch(world: World) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    books = world.stack.mpesa_sim.engine.books
    books.utilities[books.home] -= 5_000  # money left the B2C shortcode outside PenPay
    report = await world.run()
    floats = [r for r in await world.items(report) if r.source == "mpesa_float"]
    assert [r.item_class for r in floats] == ["FLOAT_MISMATCH"], [r.detail for r in floats]
    assert report.unexplained == 1


class _Behind:
    """A cursor left three days back (the worker stopped over a long weekend)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    async def cursor(self, source: str) -> datetime | None:
        return self.at


async def test_a_worker_whose_cursor_fell_behind_m_pesa_s_48_hours_raises_a_gap(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    _, end = await world.window()
    worker = ReconcileWorker(
        world.reconciler,
        _Behind(end - timedelta(days=3)),
        clock=FixedClock(end),
        reach=timedelta(hours=48),
        lag=timedelta(0),
        interval=60,
    )
    with caplog.at_level(logging.ERROR, logger="penpay.alerts"):
        await worker.run_once()
    gaps = [r for r in caplog.records if getattr(r, "alert", None) == "reconciliation_gap"]
    assert len(gaps) == 1, [r.getMessage() for r in caplog.records]
    [run] = await world.store.runs()
    # what M-Pesa still lists is reconciled all the same, from the edge of its 48 hours
    assert run.window_from == end - timedelta(hours=48) and run.status == "SUCCEEDED", run


async def test_a_transfer_penpay_holds_that_deriv_s_statement_lacks_is_missing_at_provider(
    world: World,
) -> None:
    deposit, _ = await a_deposit_and_a_withdrawal(world.stack)
    books = world.stack.deriv_sim.engine.books
    ours = [e for e in books.ledger if str(deposit.id.value) in e.longcode or str(deposit.id) in e.longcode]
    assert ours, "the deposit's transfer is not on Deriv's books"
    books.ledger = [e for e in books.ledger if e not in ours]  # Deriv's records lost it
    report = await world.run()
    items = [r for r in await world.items(report) if r.source == "deriv_statement"]
    mine = [r.item_class for r in items if str(r.transaction_id) == str(deposit.id)]
    assert mine == ["MISSING_AT_PROVIDER"], [(r.item_key, r.item_class, r.detail) for r in items]

"""Reconciliation runs and items through the HTTP bridge: staff (viewer and up) read them, users do not."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from application.reconciliation.ports import Item
from application.reconciliation.rules import Amount, ItemClass
from persistence.reconciliation import SqlReconciliationStore

from .conftest import Surface, error_shape

pytestmark = pytest.mark.integration

INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION = 3, 5, 7, 9


async def test_reconciliation_runs_and_items_over_the_bridge(surface: Surface) -> None:
    store = SqlReconciliationStore(surface.core.engine)
    now = surface.clock.now()
    run_id = await store.start_run("worker", now - timedelta(hours=1), now, now)
    item = Item(
        key=f"c2b:HTTP{run_id[-8:]}",
        source="mpesa_c2b",
        item_class=ItemClass.MATCHED,
        detail="matched",
        provider_ref="HTTP1",
        provider_amount=Amount(2_600_00, "KES"),
        penpay_amount=Amount(2_600_00, "KES"),
    )
    await store.record_item(run_id, item, now)
    await store.finish_run(run_id, "SUCCEEDED", {"MATCHED": 1}, 0, None, now)

    viewer = surface.operator("vera", ("viewer",))
    runs = await viewer.get("/v1/ops/reconciliation_runs")
    assert runs.status == 200, runs.json
    assert run_id in [r["run_id"] for r in runs.json["runs"]]
    items = await viewer.get(f"/v1/ops/reconciliation_runs/{run_id}/items", params={"item_class": "MATCHED"})
    assert items.status == 200, items.json
    [row] = items.json["items"]
    assert row["provider_ref"] == "HTTP1" and row["provider_amount"]["amount_cents"] == "260000"

    user = await surface.sign_up()
    error_shape(await user.browser.get("/v1/ops/reconciliation_runs"), 403, PERMISSION_DENIED)
    bad = await viewer.get(f"/v1/ops/reconciliation_runs/{run_id}/items", params={"item_class": "NOPE"})
    error_shape(bad, 400, INVALID_ARGUMENT)
    error_shape(await viewer.get(f"/v1/ops/reconciliation_runs/{uuid.uuid4()}/items"), 404, NOT_FOUND)


async def test_an_operator_closes_a_queued_item_over_the_bridge(surface: Surface) -> None:
    store = SqlReconciliationStore(surface.core.engine)
    now = surface.clock.now()
    run_id = await store.start_run("worker", now - timedelta(hours=1), now, now)
    key = f"b2c:{uuid.uuid4().hex[:16]}"
    item = Item(
        key=key,
        source="mpesa_b2c",
        item_class=ItemClass.AMOUNT_MISMATCH,
        detail="M-Pesa charged a fee PenPay did not book",
        provider_ref="HTTPFEE1",
        provider_amount=Amount(1_015_00, "KES"),
        penpay_amount=Amount(1_000_00, "KES"),
    )
    await store.record_item(run_id, item, now)
    await store.finish_run(run_id, "SUCCEEDED", {"AMOUNT_MISMATCH": 1}, 1, None, now)
    path = "/v1/ops/reconciliation_items:close"

    viewer = surface.operator("vera", ("viewer",))
    error_shape(await viewer.post(path, {"item_key": key, "reason": "fee"}), 403, PERMISSION_DENIED)
    olga = surface.operator("olga", ("operator",))
    error_shape(await olga.post(path, {"item_key": key, "reason": ""}), 400, INVALID_ARGUMENT)
    error_shape(await olga.post(path, {"item_key": key + "x", "reason": "fee"}), 404, NOT_FOUND)

    closed = await olga.post(path, {"item_key": key, "reason": "Safaricom B2C fee, ticket 123"})
    assert closed.status == 200, closed.json
    assert closed.json == {"item_key": key, "review_status": "RESOLVED"}
    items = await viewer.get(f"/v1/ops/reconciliation_runs/{run_id}/items")
    [row] = items.json["items"]
    assert (row["review_status"], row["resolved_by"], row["resolution"]) == (
        "RESOLVED",
        "operator:olga",
        "Safaricom B2C fee, ticket 123",
    )
    error_shape(await olga.post(path, {"item_key": key, "reason": "again"}), 400, FAILED_PRECONDITION)


async def test_a_suspense_write_off_over_the_bridge_takes_a_second_person(surface: Surface) -> None:
    store = SqlReconciliationStore(surface.core.engine)
    now = surface.clock.now()
    run_id = await store.start_run("worker", now - timedelta(hours=1), now, now)
    ref = str(uuid.uuid4().int)[:12]
    key = f"deriv:{ref}"
    item = Item(
        key=key,
        source="deriv_statement",
        item_class=ItemClass.UNKNOWN_AT_PENPAY,
        detail="money out of the Deriv float with no PenPay transaction",
        provider_ref=ref,
        provider_amount=Amount(3_00, "USD"),
        credit=False,
        float_kind="DERIV_AGENT_FLOAT",
    )
    await store.record_item(run_id, item, now)
    await store.finish_run(run_id, "SUCCEEDED", {"UNKNOWN_AT_PENPAY": 1}, 1, None, now)
    base = "/v1/ops/reconciliation_items"

    olga = surface.operator("olga", ("operator", "approver"))
    proposed = await olga.post(
        f"{base}:propose_write_off", {"item_key": key, "reason": "Deriv fee, ticket 5"}
    )
    assert proposed.status == 200, proposed.json
    own = await olga.post(f"{base}:approve_write_off", {"item_key": key})
    error_shape(own, 403, PERMISSION_DENIED)
    assert own.detail("ErrorInfo")["reason"] == "FOUR_EYES_REQUIRED"
    viewer = surface.operator("vera", ("viewer",))
    error_shape(await viewer.post(f"{base}:approve_write_off", {"item_key": key}), 403, PERMISSION_DENIED)

    amos = surface.operator("amos", ("approver",))
    approved = await amos.post(f"{base}:approve_write_off", {"item_key": key})
    assert approved.status == 200, approved.json
    assert approved.json["item_key"] == key and approved.json["posting_id"]
    again = await amos.post(f"{base}:approve_write_off", {"item_key": key})
    error_shape(again, 400, FAILED_PRECONDITION)
    items = await viewer.get(f"/v1/ops/reconciliation_runs/{run_id}/items")
    [row] = items.json["items"]
    assert (row["review_status"], row["resolved_by"], row["write_off_posting_id"]) == (
        "RESOLVED",
        "operator:amos",
        approved.json["posting_id"],
    )

"""OpsService's reconciliation reads over gRPC: runs and their items, for staff only."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from application.reconciliation.ports import Item
from application.reconciliation.rules import Amount, ItemClass
from penpay.ops.v1 import ops_pb2
from persistence.reconciliation import SqlReconciliationStore

from .conftest import Harness, details_of

pytestmark = pytest.mark.integration


async def a_run(api: Harness) -> str:
    store = SqlReconciliationStore(api.core.engine)
    now = api.clock.now()
    run_id = await store.start_run("cli", now - timedelta(hours=1), now, now)
    for n, item_class in enumerate([ItemClass.MATCHED, ItemClass.MISSING_AT_PROVIDER, ItemClass.MATCHED]):
        item = Item(
            key=f"c2b:RCPT{run_id[-6:]}{n}",
            source="mpesa_c2b",
            item_class=item_class,
            detail=f"item {n}",
            provider_ref=f"RCPT{n}",
            provider_amount=Amount(100_00 + n, "KES"),
            occurred_at=now,
        )
        await store.record_item(run_id, item, now)
    await store.finish_run(run_id, "SUCCEEDED", {"MATCHED": 2, "MISSING_AT_PROVIDER": 1}, 1, None, now)
    return run_id


async def test_staff_list_runs_and_page_through_a_runs_items(api: Harness) -> None:
    run_id = await a_run(api)
    runs = await api.ops.ListReconciliationRuns(
        ops_pb2.ListReconciliationRunsRequest(), metadata=api.operator_auth()
    )
    [run] = [r for r in runs.runs if r.run_id == run_id]
    assert (run.status, run.unexplained, dict(run.counts)) == (
        "SUCCEEDED",
        1,
        {"MATCHED": 2, "MISSING_AT_PROVIDER": 1},
    )

    first = await api.ops.ListReconciliationItems(
        ops_pb2.ListReconciliationItemsRequest(run_id=run_id, page_size=2), metadata=api.operator_auth()
    )
    assert len(first.items) == 2 and first.next_page_token
    rest = await api.ops.ListReconciliationItems(
        ops_pb2.ListReconciliationItemsRequest(run_id=run_id, page_size=2, page_token=first.next_page_token),
        metadata=api.operator_auth(),
    )
    assert len(rest.items) == 1 and not rest.next_page_token
    missing = await api.ops.ListReconciliationItems(
        ops_pb2.ListReconciliationItemsRequest(run_id=run_id, item_class="missing_at_provider"),
        metadata=api.operator_auth(),
    )
    assert [i.provider_amount.amount_cents for i in missing.items] == [100_01]
    assert missing.items[0].review_status == "OPEN"


async def test_bad_requests_and_a_user_token_are_refused(api: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await api.ops.ListReconciliationItems(
            ops_pb2.ListReconciliationItemsRequest(run_id="nope"), metadata=api.operator_auth()
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await api.ops.ListReconciliationItems(
            ops_pb2.ListReconciliationItemsRequest(run_id="01a24ad1-ea5c-72b8-98cd-b5d42bfea027"),
            metadata=api.operator_auth(),
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert details_of(unknown.value)
    user = await api.new_account()
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await api.ops.ListReconciliationRuns(ops_pb2.ListReconciliationRunsRequest(), metadata=user.auth)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

"""Deriv's REST payment-agent wallet (`GET /wallet/v1/transactions/payment_agent`) in reconciliation, over
real sockets: the REST simulator shares its books with the v3 one, so the agent's records are one
book seen through two transports; the gateway reads both (ListStatement, `api: DERIV_API_REST` for
the wallet), and reconciliation keeps each Deriv transaction once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import grpc
import pytest

from deriv_gateway.statement_client import GatewayDerivReads
from domain.payments.status import TransactionStatus
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc
from tests.reconciliation.conftest import World, a_deposit_and_a_withdrawal
from tests.sagas.harness import REST_AGENT_TOKEN

pytestmark = pytest.mark.integration

PA_TRANSACTIONS = "/wallet/v1/transactions/payment_agent"


def classes(items: list[Any]) -> dict[str, str]:
    return {row.item_key: row.item_class for row in items}


async def rest_get(world: World, path: str, **query: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {REST_AGENT_TOKEN}", "Deriv-App-ID": "app-sim-1"}
    url = f"{world.stack.rest_sim.base_url}{path}"
    async with world.stack.http.get(url, params=query, headers=headers) as response:
        return response.status, await response.json()


async def rest_control(world: World, path: str, body: dict[str, Any]) -> Any:
    url = f"{world.stack.rest_sim.base_url}/__control__/{path}"
    async with world.stack.http.post(url, json=body) as response:
        assert response.status in (200, 201), await response.text()
        return await response.json()


async def agent_transfers(world: World, count: int, prefix: str) -> None:
    """The agent moves USD 10 to alice_w `count` times on the REST API itself (as another of the
    agent's tools would: money PenPay did not move)."""
    await rest_control(world, "config", {"rate_limit_enabled": False})
    headers = {"Authorization": f"Bearer {REST_AGENT_TOKEN}", "Deriv-App-ID": "app-sim-1"}
    for i in range(count):
        body = {
            "data": {
                "to_nickname": "alice_w",
                "amount": "10.00",
                "currency": "USD",
                "request_id": f"{prefix}-{i}",
            }
        }
        url = f"{world.stack.rest_sim.base_url}/payment-agents/v1/transfer"
        async with world.stack.http.post(url, json=body, headers=headers) as response:
            assert response.status == 200, await response.text()


async def test_both_transports_read_one_book_and_each_transaction_is_kept_once(world: World) -> None:
    stack = world.stack
    await a_deposit_and_a_withdrawal(stack)  # v3 user
    rest_user = await stack.rest_user()
    rest_deposit = await stack.deposit(rest_user, 2_600)
    assert (await stack.settle(rest_deposit.id)).status is TransactionStatus.COMPLETED
    start, end = await world.window()

    # the wallet, read on its own through the gateway, holds the same transactions as the v3 statement
    async with grpc.aio.insecure_channel(stack.gateway.address) as channel:
        v3 = await GatewayDerivReads(channel, timeout=10.0).statement(start, end)
        both = await GatewayDerivReads(channel, timeout=10.0, rest=True).statement(start, end)
        wallet = await GatewayDerivReads(channel, timeout=10.0, rest=True)._wallet(start, end)
    assert {r.ref for r in wallet} == {r.ref for r in v3}
    assert len(v3) == 3
    # the REST item names PenPay's request_id: read alone, a REST deposit is PenPay's
    assert str(rest_deposit.id) in {r.transaction_hint for r in wallet}
    assert sorted(r.ref for r in both) == sorted(r.ref for r in v3)

    report = await world.run()
    assert report.status == "SUCCEEDED", report
    found = classes(await world.items(report))
    assert report.unexplained == 0, found
    assert len([k for k in found if k.startswith("deriv:")]) == 3
    assert set(found.values()) == {"MATCHED"}


async def test_a_pending_rest_transfer_awaits_and_a_reverted_one_is_reported(world: World) -> None:
    stack = world.stack
    rest_user = await stack.rest_user()
    done = await stack.deposit(rest_user, 2_600)
    assert (await stack.settle(done.id)).status is TransactionStatus.COMPLETED
    # an operation of the agent's that Deriv has accepted and not carried out yet
    await stack.rest_fault(kind="pending", endpoint="transfer", settle_after=3600, times=1)
    await agent_transfers(world, 1, "pend")
    await rest_control(world, "revert", {"kind": "transfer", "request_id": str(done.id)})

    report = await world.run()
    assert report.status == "SUCCEEDED", report
    items = await world.items(report)
    found = classes(items)
    pending = next(r for r in items if r.item_key == "deriv:request:pend-0")
    assert pending.item_class == "AWAITING_PROVIDER", pending.detail
    assert "status pending" in pending.detail
    assert pending.suspense_posting_id is None
    # reverted: Deriv moved the money back; PenPay's ledger still has it at the client
    reverted = [r for r in items if str(r.transaction_id) == str(done.id) and r.item_key.startswith("deriv:")]
    assert len(reverted) == 2, found
    assert "MATCHED" not in {r.item_class for r in reverted}, [(r.item_class, r.detail) for r in reverted]
    assert report.unexplained >= 1


async def test_the_june_generation_is_read_alike(world: World) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    await rest_control(world, "config", {"generation": "june"})
    start, end = await world.window()
    async with grpc.aio.insecure_channel(world.stack.gateway.address) as channel:
        v3 = await GatewayDerivReads(channel, timeout=10.0).statement(start, end)
        wallet = await GatewayDerivReads(channel, timeout=10.0, rest=True)._wallet(start, end)
    assert sorted(r.ref for r in wallet) == sorted(r.ref for r in v3) and len(v3) == 2
    assert {r.status for r in wallet} == {"complete"}


async def test_the_simulator_filters_by_request_id_and_lists_statuses(world: World) -> None:
    await agent_transfers(world, 3, "flt")
    status, body = await rest_get(world, PA_TRANSACTIONS, request_id="flt-1")
    assert status == 200, body
    [item] = body["data"]["transactions"]
    assert item["request_id"] == "flt-1"
    assert item["category"] == "withdrawal" and item["metadata"]["transaction_status"] == "complete"
    assert item["metadata"]["destination_client_id"] == "CR90000001"

    await world.stack.rest_fault(kind="pending", endpoint="transfer", settle_after=3600, times=1)
    await agent_transfers(world, 1, "pend")
    status, body = await rest_get(world, PA_TRANSACTIONS, request_id="pend-0")
    [item] = body["data"]["transactions"]
    assert item["metadata"]["transaction_status"] == "pending" and item["transaction_id"] is None

    await rest_control(world, "revert", {"kind": "transfer", "request_id": "flt-2"})
    status, body = await rest_get(world, PA_TRANSACTIONS, request_id="flt-2")
    statuses = sorted(i["metadata"]["transaction_status"] for i in body["data"]["transactions"])
    assert statuses == ["complete", "reverted"]  # the original, and the move back

    status, body = await rest_get(world, PA_TRANSACTIONS, per_page="5")
    assert status == 400 and "data" not in body  # the flat error body of the wallet endpoints
    assert body["errors"][0]["code"] == "ValidationError"


@pytest.mark.parametrize("omit_links", [False, True])
async def test_the_gateway_pages_through_the_wallet_with_or_without_links(
    world: World, omit_links: bool
) -> None:
    await agent_transfers(world, 130, "bulk")
    await rest_control(world, "config", {"omit_links": omit_links})
    now = world.stack.deriv_sim.engine.clock.now()
    from datetime import UTC, datetime

    start = datetime.fromtimestamp(now, UTC) - timedelta(hours=1)
    end = datetime.fromtimestamp(now, UTC) + timedelta(hours=1)
    async with grpc.aio.insecure_channel(world.stack.gateway.address) as channel:
        wallet = await GatewayDerivReads(channel, timeout=10.0, rest=True)._wallet(start, end)
    bulk = [r for r in wallet if (r.transaction_hint or "") == "" and not r.credit]
    assert len({r.ref for r in wallet}) == len(wallet)
    assert len(bulk) >= 130


async def test_the_gateway_follows_no_link_to_another_host_or_resource(world: World) -> None:
    await agent_transfers(world, 101, "page")
    async with grpc.aio.insecure_channel(world.stack.gateway.address) as channel:
        stub = pb_grpc.DerivGatewayServiceStub(channel)
        first = await stub.ListStatement(pb.ListStatementRequest(api=pb.DERIV_API_REST), timeout=10.0)
        assert first.more and first.next_page_token.startswith(PA_TRANSACTIONS)
        second = await stub.ListStatement(
            pb.ListStatementRequest(api=pb.DERIV_API_REST, page_token=first.next_page_token), timeout=10.0
        )
        assert second.entries and not second.more
        for token in (
            "https://evil.example" + first.next_page_token,
            first.next_page_token.replace(PA_TRANSACTIONS, "/payment-agents/v1/agents/me"),
        ):
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.ListStatement(
                    pb.ListStatementRequest(api=pb.DERIV_API_REST, page_token=token), timeout=10.0
                )


async def test_a_wallet_page_the_agent_token_limiter_holds_back_is_asked_again(world: World) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    start, end = await world.window()
    rest = world.stack.gateway.rest
    assert rest is not None
    # the agent's token spent its minute on money calls: the next call may go in 3 s
    rest.client.limiters.for_token(REST_AGENT_TOKEN).block(rest.client.clock() + 3.0)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    async with grpc.aio.insecure_channel(world.stack.gateway.address) as channel:
        reads = GatewayDerivReads(channel, timeout=10.0, rest=True, sleep=sleep)
        wallet = await reads._wallet(start, end)
    assert reads.held_back == 1 and len(waits) == 1 and 0 < waits[0] <= 3.0
    assert len(wallet) == 2

"""The transport seam: penpay.deriv.v1 over gRPC drives v3 and REST accounts in one gateway.

A REST request is marked `api: DERIV_API_REST` and names the client by nickname; an old caller's
request (no `api`) still goes to v3. Both kinds of money land in the one simulated world, each
operation id executing at most once under the gateway's journal.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import pytest

from deriv_gateway import journal as jn
from deriv_gateway.config import GatewayConfig
from deriv_gateway.payments_client import classify
from deriv_gateway.protocol.messages import reference
from deriv_gateway.server import GatewayServer
from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN, DerivSimulator, SimulatorConfig
from deriv_gateway.simulator.rest import DerivRestSimulator, RestServerConfig
from penpay.common.v1 import money_pb2
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc
from proving.simulator_books import operation_id_of

from .conftest import ALICE, OPENAPI

pytestmark = pytest.mark.integration
REST = pb.DERIV_API_REST


class Seam:
    def __init__(
        self,
        v3: DerivSimulator,
        rest: DerivRestSimulator,
        stub: Any,
        http: aiohttp.ClientSession,
        server: Any,
    ) -> None:
        self.server = server
        self.v3 = v3
        self.rest = rest
        self.stub = stub
        self.http = http

    async def fault(self, **rule: Any) -> None:
        async with self.http.post(f"{self.rest.base_url}/__control__/faults", json=rule) as r:
            assert r.status == 201

    def executed(self, operation_id: str) -> int:
        return len(self.v3.engine.books.find_transfers(reference=operation_id))

    def posts(self, path: str) -> int:
        return sum(1 for e in self.rest.wire if e["method"] == "POST" and e["path"] == path)


@contextlib.asynccontextmanager
async def open_seam(
    sqlite_url: str,
    before_start: Callable[[DerivRestSimulator], Awaitable[None]] | None = None,
    **overrides: Any,
) -> AsyncIterator[Seam]:
    if not OPENAPI.exists():
        pytest.skip("Deriv's OpenAPI document is not in ../shared")
    v3 = DerivSimulator(SimulatorConfig(port=0, control_port=0, seed=21, request_timeout=3.0))
    await v3.start()
    rest = DerivRestSimulator(v3, RestServerConfig(port=0, openapi=OPENAPI))
    await rest.start()
    if before_start is not None:
        await before_start(rest)
    config = GatewayConfig(
        ws_url=v3.url(app_id=None),
        app_id="1089",
        agent_token=DEFAULT_AGENT_TOKEN,
        grpc_addr="127.0.0.1:0",
        database_url=sqlite_url,
        request_timeout=5.0,
        backoff_initial=0.05,
        rest_base_url=rest.base_url,
        rest_app_id="app-sim-1",
        rest_agent_token="sim-rest-agent-pat",
        rest_poll_interval=0.01,
        unknown_settle=0.0,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    server = GatewayServer(config)
    await server.start()
    await server.wait_serving(10)
    channel = grpc.aio.insecure_channel(server.address)
    try:
        async with aiohttp.ClientSession() as http:
            yield Seam(v3, rest, pb_grpc.DerivGatewayServiceStub(channel), http, server)
    finally:
        await channel.close()
        await server.stop(grace=0.2)
        await rest.stop()
        await v3.stop()
    assert not rest.api.violations, rest.api.violations[:5]
    assert v3.engine.books.summary()["balanced"]


@pytest.fixture
async def seam(sqlite_url: str) -> AsyncIterator[Seam]:
    async with open_seam(sqlite_url) as opened:
        yield opened


def _usd(cents: int) -> money_pb2.Money:
    return money_pb2.Money(amount_cents=cents, currency="USD")


def _rest_transfer(op: str, cents: int = 2000, **kw: Any) -> pb.TransferRequest:
    return pb.TransferRequest(transfer_id=op, client_nickname="alice_w", amount=_usd(cents), api=REST, **kw)


async def test_v3_and_rest_transfers_in_one_gateway(seam: Seam) -> None:
    v3 = await seam.stub.Transfer(
        pb.TransferRequest(transfer_id="op-v3", client_loginid="CR90000002", amount=_usd(1000))
    )
    rest = await seam.stub.Transfer(_rest_transfer("op-rest"))
    assert v3.client_loginid == "CR90000002" and rest.client_loginid == "@alice_w"
    assert rest.deriv_transaction_id > 0 and not rest.replayed
    again = await seam.stub.Transfer(_rest_transfer("op-rest"))
    assert again.replayed and again.deriv_transaction_id == rest.deriv_transaction_id
    assert seam.executed("op-rest") == 1 and seam.posts("/payment-agents/v1/transfer") == 1
    moves = seam.v3.engine.books.find_transfers(reference="op-rest")
    assert [(m.kind, operation_id_of(m.description)) for m in moves] == [("paymentagent_transfer", "op-rest")]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await seam.stub.Transfer(_rest_transfer("op-rest", cents=2500))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    balance = await seam.stub.GetBalance(pb.GetBalanceRequest(api=REST))
    assert balance.balance.amount_cents == 5_000_000 - 1000 - 2000


@pytest.mark.parametrize("kind", ["drop_after", "timeout_after"])
async def test_rest_unknown_outcome_resolves_to_one_transfer(seam: Seam, kind: str) -> None:
    await seam.fault(kind=kind, endpoint="transfer", times=1)
    op = f"op-{kind}".replace("_", "-")
    reply = await seam.stub.Transfer(_rest_transfer(op))
    assert reply.resolved_from_statement and reply.deriv_transaction_id > 0
    assert seam.executed(op) == 1 and seam.posts("/payment-agents/v1/transfer") == 1


async def test_rest_unknown_then_not_found_is_sent_again_once(seam: Seam) -> None:
    await seam.fault(kind="transient_500", endpoint="transfer", times=1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await seam.stub.Transfer(_rest_transfer("op-500"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert type(classify(caught.value)).__name__ == "CallOutcomeUnknown"
    reply = await seam.stub.Transfer(_rest_transfer("op-500"))  # looked up, absent, sent again
    assert not reply.replayed and seam.executed("op-500") == 1
    assert seam.posts("/payment-agents/v1/transfer") == 2


async def test_rest_429_defers_and_is_not_an_attempt(seam: Seam) -> None:
    await seam.fault(kind="rate_limit", endpoint="transfer", retry_in=5, times=1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await seam.stub.Transfer(_rest_transfer("op-429"))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert type(classify(caught.value)).__name__ == "CallDeferred"
    assert seam.executed("op-429") == 0


async def test_rest_resolve_only_never_sends(seam: Seam) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await seam.stub.Transfer(_rest_transfer("op-never", resolve_only=True))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # NOT_EXECUTED
    assert seam.posts("/payment-agents/v1/transfer") == 0


async def test_rest_withdrawal_through_the_gateway(seam: Seam) -> None:
    await seam.stub.RequestWithdrawalCode(
        pb.RequestWithdrawalCodeRequest(client_token=ALICE, amount=_usd(1500), api=REST)
    )
    code = next(m.code for m in reversed(seam.v3.engine.books.mailbox) if m.loginid == "CR90000001")
    request = pb.WithdrawRequest(
        withdrawal_id="wd-seam", client_token=ALICE, client_nickname="alice_w", verification_code=code,
        amount=_usd(1500), api=REST,
    )  # fmt: skip
    reply = await seam.stub.Withdraw(request)
    assert reply.deriv_transaction_id > 0 and seam.executed("wd-seam") == 1
    again = await seam.stub.Withdraw(request)
    assert again.replayed and seam.posts("/payment-agents/v1/withdraw") == 1
    # the books read as v3 books do: the consistency checker maps them to PenPay operations
    moves = seam.v3.engine.books.find_transfers(reference="wd-seam")
    assert [(m.kind, operation_id_of(m.description)) for m in moves] == [("paymentagent_withdraw", "wd-seam")]


async def test_a_new_leader_sweeps_rest_rows_by_request_id(sqlite_url: str) -> None:
    """Rows an earlier leader left SENDING: executed at Deriv -> DONE; unknown there -> NOT_SENT.
    The v3 sweep (which reads the v3 statement) must leave them alone."""
    journal = jn.Journal.from_url(sqlite_url)
    for op in ("op-swept-ran", "op-swept-absent"):
        created, _ = await journal.claim(
            operation_id=op, kind="transfer", client_loginid="@alice_w", amount_cents=700,
            currency="USD", description=op, token=0,
        )  # fmt: skip
        assert created
    await journal.close()

    async def the_first_post_ran(rest: DerivRestSimulator) -> None:
        body = {
            "data": {
                "to_nickname": "alice_w",
                "amount": "7.00",
                "currency": "USD",
                "request_id": "op-swept-ran",
            }
        }
        headers = {"Authorization": "Bearer sim-rest-agent-pat", "Deriv-App-ID": "app-sim-1"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(rest.base_url + "/payment-agents/v1/transfer", json=body, headers=headers) as r,
        ):
            assert r.status == 200

    async with open_seam(sqlite_url, the_first_post_ran) as seam:
        journal = seam.server.journal
        for _ in range(500):  # the sweep runs once the fence is raised: wait for it, bounded
            rows = [await journal.get(op) for op in ("op-swept-ran", "op-swept-absent")]
            if all(row is not None and row.status != jn.SENDING for row in rows):
                break
            await asyncio.sleep(0.01)
        ran, absent = rows
        assert ran is not None and ran.status == jn.DONE
        ran_transfer = seam.v3.engine.books.find_transfers(reference="op-swept-ran")[0]
        assert ran.deriv_transaction_id == ran_transfer.debit_transaction_id
        assert absent is not None and absent.status == jn.NOT_SENT
        assert seam.posts("/payment-agents/v1/transfer") == 1  # the sweep never sends


async def test_rest_watch_balance_streams_changes(sqlite_url: str) -> None:
    async with open_seam(sqlite_url, rest_balance_poll=0.02) as seam:
        stream = seam.stub.WatchBalance(pb.WatchBalanceRequest(api=REST))
        first = await asyncio.wait_for(stream.read(), 10)
        await seam.stub.Transfer(_rest_transfer("op-watch"))
        second = await asyncio.wait_for(stream.read(), 10)  # the next poll that sees a change
        stream.cancel()
    assert first.balance.amount_cents - second.balance.amount_cents == 2000
    assert second.loginid == "@penpay_agent"


async def test_the_v3_sweep_leaves_rest_rows_alone(sqlite_url: str) -> None:
    """REST rows are not in the v3 statement: the v3 sweep must not take their absence for "not executed"."""
    journal = jn.Journal.from_url(sqlite_url)
    for op, client in (("op-v3-left", "CR90000002"), ("op-rest-left", "@alice_w")):
        created, _ = await journal.claim(
            operation_id=op, kind="transfer", client_loginid=client, amount_cents=700,
            currency="USD", description=reference(op), token=0,
        )  # fmt: skip
        assert created
    await journal.close()
    async with open_seam(sqlite_url, rest_base_url="") as seam:  # v3 only: nothing else sweeps
        journal = seam.server.journal
        for _ in range(500):  # until the v3 sweep has settled its own row, bounded
            v3_row = await journal.get("op-v3-left")
            if v3_row is not None and v3_row.status != jn.SENDING:
                break
            await asyncio.sleep(0.01)
        assert v3_row is not None and v3_row.status == jn.NOT_SENT
        rest_row = await journal.get("op-rest-left")
        assert rest_row is not None and rest_row.status == jn.SENDING


async def test_a_refused_agent_token_is_unavailable_not_a_refusal(sqlite_url: str) -> None:
    async with open_seam(sqlite_url, rest_agent_token="sim-rest-agent-trade") as seam:  # no payment scope
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await seam.stub.Transfer(_rest_transfer("op-badtoken"))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert type(classify(caught.value)).__name__ == "CallUnavailable"  # retried later, same id
        assert seam.executed("op-badtoken") == 0


@pytest.mark.parametrize("settle_to", ["complete", "rejected"])
async def test_rest_pending_transfer_settles_through_the_gateway(seam: Seam, settle_to: str) -> None:
    await seam.fault(kind="pending", endpoint="transfer", settle_to=settle_to, settle_after=0.05, times=1)
    op = f"op-pending-{settle_to}"
    if settle_to == "complete":
        reply = await seam.stub.Transfer(_rest_transfer(op))
        assert reply.deriv_transaction_id > 0 and seam.executed(op) == 1
    else:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await seam.stub.Transfer(_rest_transfer(op))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # definite: nothing moved
        assert seam.executed(op) == 0
        row = await seam.server.journal.get(op)
        assert row is not None and row.status == jn.FAILED
    assert seam.posts("/payment-agents/v1/transfer") == 1


async def test_rest_authorize_names_the_account_by_nickname(seam: Seam) -> None:
    reply = await seam.stub.Authorize(pb.AuthorizeRequest(client_token=ALICE, api=REST))
    assert (reply.nickname, reply.currency, reply.loginid) == ("alice_w", "USD", "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # a token without account_manage
        await seam.stub.Authorize(pb.AuthorizeRequest(client_token="sim-rest-client2-pat", api=REST))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

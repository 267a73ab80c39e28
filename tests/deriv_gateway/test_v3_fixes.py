"""Issue 15's gateway fixes (v3) and issue 21's Deriv side, over real sockets.

gRPC -> gateway -> WebSocket -> Deriv simulator; the journal on SQLite (one file per test).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import grpc
import pytest

from deriv_gateway import journal as jn
from deriv_gateway.simulator import DEFAULT_AGENT_LOGINID
from deriv_gateway.simulator.faults import FaultRule
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from tests.deriv_gateway.conftest import FrameLog, Sim, StartGateway, journaled
from tests.deriv_gateway.test_gateway import CLIENT, CLIENT_TOKEN, error_info_of, transfer, usd
from tests.deriv_gateway.test_link_send import ExceptionsReported
from tests.deriv_gateway.test_takeover_and_resolve import _books, _claim, _execute_behind_the_gateway

pytestmark = pytest.mark.integration


async def _until(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _rule(sim: Sim, rule_id: str) -> FaultRule:
    return next(r for r in sim.sim.faults.rules if r.id == rule_id)


# --- 3. a RateLimit answer to the keep-alive ping -------------------------------------------------


async def test_a_rate_limited_ping_does_not_drop_a_live_socket(sim: Sim, start_gateway: StartGateway) -> None:
    gw = await start_gateway(ping_interval=0.05)
    await sim.fault(id="ping-rl", kind="rate_limit", call="ping", times=3)
    rule = _rule(sim, "ping-rl")

    async def refused_then_answered() -> bool:
        return rule.fired == 3 and rule.seen > 3  # three RateLimit answers, then a pong

    await _until(refused_then_answered)
    agent = gw.server.gateway.agent
    assert agent.connects == 1 and agent.ready  # each answer proved the socket alive: kept
    tid = str(uuid.uuid4())
    await gw.stub.Transfer(transfer(tid))
    assert await sim.executed(f"PenPay {tid}") == 1


# --- 4. what Deriv would refuse anyway is refused before any frame --------------------------------


async def test_a_transfer_to_the_agent_itself_or_outside_its_limits_is_refused_before_any_frame(
    sim: Sim, start_gateway: StartGateway, frames: FrameLog
) -> None:
    gw = await start_gateway(transfer_min_cents=10_00, transfer_max_cents=2_000_00)
    refused = {
        str(uuid.uuid4()): transfer_to(DEFAULT_AGENT_LOGINID, 12_50),  # the agent's own account
        str(uuid.uuid4()): transfer_to(CLIENT, 9_99),  # below the minimum
        str(uuid.uuid4()): transfer_to(CLIENT, 2_000_01),  # above the maximum
    }
    for tid, (loginid, cents) in refused.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.Transfer(transfer(tid, cents, loginid=loginid))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        assert await gw.server.journal.get(tid) is None  # nothing journaled either
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Withdraw(withdraw(str(uuid.uuid4()), 2_000_01))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "USD 2,000.00" in caught.value.details()
    assert not frames.sent("paymentagent_transfer") and not frames.sent("paymentagent_withdraw")
    # the edges are Deriv's own: both allowed
    for cents in (10_00, 2_000_00):
        await gw.stub.Transfer(transfer(str(uuid.uuid4()), cents))


async def test_an_operation_journaled_before_the_limits_changed_is_settled_not_refused(
    sim: Sim, start_gateway: StartGateway, sqlite_url: str
) -> None:
    executed = str(uuid.uuid4())
    await _claim(sqlite_url, executed)  # 13.00 sent by an earlier leader, executed at Deriv
    await _execute_behind_the_gateway(sim, executed)
    gw = await start_gateway(transfer_max_cents=10_00, unknown_settle=0.0)
    result = await gw.stub.Transfer(transfer(executed, 13_00))
    assert result.resolved_from_statement
    assert await sim.executed(f"PenPay {executed}") == 1


def transfer_to(loginid: str, cents: int) -> tuple[str, int]:
    return loginid, cents


def withdraw(wid: str, cents: int) -> pb.WithdrawRequest:
    return pb.WithdrawRequest(
        withdrawal_id=wid, client_token=CLIENT_TOKEN, verification_code="abcdefgh", amount=usd(cents)
    )


# --- 1. a drop with many transfers in flight ---------------------------------------------------------


async def test_a_drop_with_many_transfers_in_flight_resolves_them_from_one_statement_read(
    sim: Sim, start_gateway: StartGateway, frames: FrameLog
) -> None:
    # more unknown outcomes at once than Deriv's statement allowance (25 a minute; ours 22)
    count = 30
    gw = await start_gateway(request_timeout=8.0)
    # each transfer executes at once and its reply is held back: all in flight when the socket drops
    await sim.fault(kind="delay", call="paymentagent_transfer", delay=2.5, times=count)
    tids = [str(uuid.uuid4()) for _ in range(count)]
    calls = [asyncio.ensure_future(gw.stub.Transfer(transfer(tid))) for tid in tids]

    async def all_executed() -> bool:
        return int((await sim.get("/books/transfers", kind="paymentagent_transfer"))["count"]) >= count

    await _until(all_executed)
    statements_before = len(frames.sent("statement"))
    with ExceptionsReported(asyncio.get_running_loop()) as reported:
        assert await sim.drop_connections() >= 1
        results = await asyncio.gather(*calls)  # none held back for the statement's rate limit
        assert not reported.never_retrieved()  # every reply waiter the drop failed was awaited
    assert all(r.resolved_from_statement for r in results)
    assert len({r.deriv_transaction_id for r in results}) == count
    for tid in tids:
        assert await sim.executed(f"PenPay {tid}") == 1
    assert len(frames.sent("statement")) - statements_before <= 2


# --- 6. (issue 21) an answer about another operation ------------------------------------------------


def _alerts() -> float:
    from prometheus_client import REGISTRY

    import workers.alert_metrics  # noqa: F401 - installs the counter on the alerts logger

    return REGISTRY.get_sample_value("penpay_alerts_total", {"kind": "deriv_foreign_answer"}) or 0.0


async def test_a_transfer_reply_about_another_operation_is_not_taken_for_ours(
    sim: Sim, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(unknown_settle=30.0)
    alerts = _alerts()
    # executed, answered as another operation: found in our own statement line instead
    executed = str(uuid.uuid4())
    await sim.fault(kind="other_operation", call="paymentagent_transfer", match={"description": executed})
    result = await gw.stub.Transfer(transfer(executed))
    line = await _books(sim, executed)
    assert result.resolved_from_statement
    assert result.deriv_transaction_id == line["debit_transaction_id"]  # not the answer's id
    assert _alerts() == alerts + 1

    # not executed, answered "done" as another operation: neither done nor not sent
    unsent = str(uuid.uuid4())
    await sim.fault(
        kind="other_operation", call="paymentagent_transfer", match={"description": unsent}, execute=False
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Transfer(transfer(unsent))
    info = error_info_of(caught.value)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and info.metadata["outcome"] == "unknown"
    assert (
        await journaled(gw.server.journal, unsent)
    ).status == jn.SENDING  # resolved later, never resent blind
    assert await sim.executed(f"PenPay {unsent}") == 0
    assert _alerts() == alerts + 2


async def test_a_withdraw_reply_about_another_operation_is_not_taken_for_ours(
    sim: Sim, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(unknown_settle=30.0)
    alerts = _alerts()
    await gw.stub.RequestWithdrawalCode(pb.RequestWithdrawalCodeRequest(client_token=CLIENT_TOKEN))
    code = (await sim.get(f"/mailbox/{CLIENT}"))["latest"]
    wid = str(uuid.uuid4())
    await sim.fault(kind="other_operation", call="paymentagent_withdraw", execute=False)
    request = pb.WithdrawRequest(
        withdrawal_id=wid, client_token=CLIENT_TOKEN, verification_code=code, amount=usd(20_00)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Withdraw(request)
    info = error_info_of(caught.value)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and info.metadata["outcome"] == "unknown"
    assert (await journaled(gw.server.journal, wid)).status == jn.SENDING
    assert await sim.executed(f"PenPay {wid}") == 0
    assert _alerts() == alerts + 1


@pytest.mark.parametrize("kind", ["other_operation", "other_line"])
async def test_a_statement_about_other_operations_proves_nothing_about_ours(
    sim: Sim, start_gateway: StartGateway, sqlite_url: str, kind: str
) -> None:
    gw = await start_gateway(unknown_settle=0.0)
    # an earlier attempt's frame executed at Deriv; its row is SENDING, past the settle window
    earlier = str(uuid.uuid4())
    await _claim(sqlite_url, earlier)
    await _execute_behind_the_gateway(sim, earlier)
    alerts = _alerts()
    await sim.fault(kind=kind, call="statement", times=1)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Transfer(transfer(earlier, 13_00))

    # another query's page (no line of ours) is not "not executed": nothing sent again;
    # a line with our reference about another client and amount is not "executed" either
    info = error_info_of(caught.value)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and info.metadata["outcome"] == "unknown"
    assert (await journaled(gw.server.journal, earlier)).status == jn.SENDING
    assert _alerts() == alerts + 1
    found = await gw.stub.Transfer(transfer(earlier, 13_00))  # our statement, answered about ours
    assert found.resolved_from_statement
    await _books(sim, earlier)  # exactly one transfer with this reference


async def test_a_reply_carrying_another_operations_transaction_id_is_not_taken_for_ours(
    sim: Sim, start_gateway: StartGateway, journal_url: str
) -> None:
    gw = await start_gateway(database_url=journal_url)
    first = await gw.stub.Transfer(transfer(str(uuid.uuid4())))
    alerts = _alerts()
    tid = str(uuid.uuid4())
    await sim.fault(kind="reused_transaction_id", call="paymentagent_transfer", times=1)
    result = await gw.stub.Transfer(transfer(tid))  # answered with the first transfer's id
    line = await _books(sim, tid)
    assert result.resolved_from_statement and result.deriv_transaction_id == line["debit_transaction_id"]
    assert result.deriv_transaction_id != first.deriv_transaction_id
    assert (await journaled(gw.server.journal, tid)).deriv_transaction_id == line["debit_transaction_id"]
    assert _alerts() == alerts + 1

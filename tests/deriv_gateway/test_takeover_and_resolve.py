"""Leadership hand-over (fence, sweep of SENDING rows) and resolve_only, over real sockets.

gRPC -> gateway -> WebSocket -> Deriv simulator; the journal on MariaDB and SQLite; leases on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import grpc
import pytest
from redis.asyncio import Redis

from deriv_gateway import journal as jn
from deriv_gateway.connection import ClientSession
from deriv_gateway.lease import RedisLease
from deriv_gateway.simulator import DEFAULT_AGENT_LOGINID, DEFAULT_AGENT_TOKEN
from domain.shared.clock import Clock
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc
from tests.conftest import REPO_ROOT
from tests.deriv_gateway.conftest import FrameLog, Sim, StartGateway, WorldClock, journaled, lease_token
from tests.deriv_gateway.test_gateway import (
    CLIENT,
    CLIENT_TOKEN,
    _stdout,
    error_info,
    error_info_of,
    transfer,
    usd,
)

pytestmark = pytest.mark.integration

# the gateway's default settle window: tests on a WorldClock move past it instead of waiting it out
SETTLE = 30.0


async def _claim(
    url: str,
    op: str,
    *,
    kind: str = "transfer",
    cents: int = 1300,
    token: int = 1,
    clock: Clock | None = None,
) -> None:
    """A SENDING row as a gateway writes it just before its frame leaves (on the gateway's clock)."""
    journal = jn.Journal.from_url(url, clock=clock)
    try:
        created, _ = await journal.claim(
            operation_id=op,
            kind=kind,
            client_loginid=CLIENT,
            amount_cents=cents,
            currency="USD",
            description=f"PenPay {op}",
            token=token,
        )
        assert created
    finally:
        await journal.close()


async def _execute_behind_the_gateway(
    sim: Any, op: str, *, kind: str = "transfer", cents: int = 1300
) -> None:
    """The frame a dead gateway sent: executed at Deriv, its answer never recorded."""
    fields: dict[str, Any] = {"amount": cents / 100, "currency": "USD", "description": f"PenPay {op}"}
    if kind == "transfer":
        async with ClientSession(sim.ws_url, "1089", DEFAULT_AGENT_TOKEN) as agent:
            await agent.request("paymentagent_transfer", {**fields, "transfer_to": CLIENT})
    else:
        async with ClientSession(sim.ws_url, "1089", CLIENT_TOKEN) as client:
            await client.request("verify_email", {"type": "paymentagent_withdraw"}, value="alice@clients.sim")
            code = (await sim.get(f"/mailbox/{CLIENT}"))["latest"]
            await client.request(
                "paymentagent_withdraw",
                {**fields, "paymentagent_loginid": DEFAULT_AGENT_LOGINID, "verification_code": code},
            )


async def _books(sim: Any, op: str) -> dict[str, Any]:
    books = await sim.get("/books/transfers", description_contains=f"PenPay {op}")
    assert books["count"] == 1, books
    return dict(books["transfers"][0])


async def _until(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def _money_frames(frames: FrameLog, op: str) -> list[dict[str, Any]]:
    return [
        f
        for call in ("paymentagent_transfer", "paymentagent_withdraw")
        for f in frames.sent(call)
        if op in str(f.get("description"))
    ]


# --- the sweep ---------------------------------------------------------------------------------


async def test_a_new_leader_settles_the_crashed_leaders_sending_row_from_the_statement(
    sim: Sim,
    start_gateway: StartGateway,
    frames: FrameLog,
    redis_url: str,
    key_prefix: str,
    redis_client: Redis,
    fresh_mariadb_url: str,
) -> None:
    """Leader A (a process) is killed after its frame executed and before it recorded the answer;
    standby B takes over and records the simulator's transaction id without sending anything."""
    ttl, retry = 1.5, 0.2
    key = f"{key_prefix}lease"
    env = {
        **os.environ,
        "PENPAY_DERIV_WS_URL": sim.ws_url,
        "PENPAY_DERIV_APP_ID": "1089",
        "PENPAY_DERIV_AGENT_TOKEN": DEFAULT_AGENT_TOKEN,
        "PENPAY_GATEWAY_ADDR": "127.0.0.1:0",
        "PENPAY_REDIS_URL": redis_url,
        "PENPAY_DATABASE_URL": fresh_mariadb_url,
        "PENPAY_GATEWAY_LEASE_TTL": str(ttl),
        "PENPAY_GATEWAY_LEASE_RETRY": str(retry),
        "PENPAY_GATEWAY_LEASE_KEY": key,
    }
    leader = subprocess.Popen(
        [sys.executable, "-m", "penpay", "gateway", "--log-level", "WARNING"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = await asyncio.wait_for(asyncio.to_thread(_stdout(leader).readline), 20)
        assert "listening on" in line, line
        address = line.rsplit(" ", 1)[1].strip()
        standby = await start_gateway(
            wait=False,
            database_url=fresh_mariadb_url,
            lease=RedisLease(redis_url, key, ttl=ttl, retry=retry),
        )
        tid = str(uuid.uuid4())
        # Deriv executes the transfer at once and answers only 2.5 s later: A dies in between
        await sim.fault(kind="delay", call="paymentagent_transfer", delay=2.5, times=1)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.DerivGatewayServiceStub(channel)
            deadline = time.monotonic() + 10
            while True:  # A serves once it holds the lease
                try:
                    await stub.GetBalance(pb.GetBalanceRequest())
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                    await asyncio.sleep(0.05)
            call = asyncio.ensure_future(stub.Transfer(transfer(tid, 1300)))
            await _until(lambda: sim.executed(f"PenPay {tid}"))
            leader.kill()  # SIGKILL: no answer recorded, no lease released
            leader.wait(5)
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call
        row = await standby.server.journal.get(tid)
        assert row is not None and row.status == jn.SENDING and row.fencing_token == 1

        async def settled() -> jn.Operation | None:
            current = await standby.server.journal.get(tid)
            return current if current is not None and current.status == jn.DONE else None

        row = await _until(settled, ttl + retry + 10)
        executed = await _books(sim, tid)
        assert row.deriv_transaction_id == executed["debit_transaction_id"]
        assert row.fencing_token == lease_token(standby.server) >= 2
        assert row.result and row.result["resolved_from_statement"]
        assert await sim.executed(f"PenPay {tid}") == 1
        assert _money_frames(frames, tid) == []  # B never sent it
        assert frames.sent("statement")
        replay = await standby.stub.Transfer(transfer(tid, 1300))
        assert replay.replayed and replay.deriv_transaction_id == executed["debit_transaction_id"]
        assert _money_frames(frames, tid) == [] and await sim.executed(f"PenPay {tid}") == 1
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait(5)


async def test_the_sweep_after_a_restart_records_executed_rows_and_releases_absent_ones(
    sim: Sim, start_gateway: StartGateway, frames: FrameLog, journal_url: str
) -> None:
    executed, absent = str(uuid.uuid4()), str(uuid.uuid4())
    for op in (executed, absent):
        await _claim(journal_url, op)
    await _execute_behind_the_gateway(sim, executed)

    gw = await start_gateway(database_url=journal_url, unknown_settle=0.0)
    journal = gw.server.journal

    async def both_settled() -> bool:
        rows = [await journaled(journal, op) for op in (executed, absent)]
        return all(r is not None and r.status != jn.SENDING for r in rows)

    await _until(both_settled)
    done, released = await journaled(journal, executed), await journaled(journal, absent)
    assert done.status == jn.DONE
    assert done.deriv_transaction_id == (await _books(sim, executed))["debit_transaction_id"]
    assert released.status == jn.NOT_SENT and released.error_code == "NOT_EXECUTED"
    assert frames.sent("paymentagent_transfer") == []  # the sweep never sends
    assert await sim.executed(f"PenPay {absent}") == 0
    # released: the next request sends it, once
    result = await gw.stub.Transfer(transfer(absent, 1300))
    assert not result.replayed and await sim.executed(f"PenPay {absent}") == 1
    row = await journaled(journal, absent)
    assert row.status == jn.DONE and row.attempts == 2


async def test_a_row_inside_the_settle_window_is_looked_at_again_when_it_ends(
    sim: Sim, start_gateway: StartGateway, frames: FrameLog, sqlite_url: str
) -> None:
    op = str(uuid.uuid4())
    await _claim(sqlite_url, op)
    gw = await start_gateway(unknown_settle=1.5)
    row = await journaled(gw.server.journal, op)
    assert row.status == jn.SENDING  # too early to tell: left alone

    async def released() -> bool:
        current = await gw.server.journal.get(op)
        return current is not None and current.status == jn.NOT_SENT

    await _until(released, 6)
    assert frames.sent("paymentagent_transfer") == [] and await sim.executed(f"PenPay {op}") == 0


async def test_the_settle_window_counts_from_the_send_not_from_the_last_question(
    sim: Sim, start_gateway: StartGateway, sqlite_url: str, world_clock: WorldClock
) -> None:
    """Asking about an unknown row (which takes it over) must not push its settle window back."""
    op = str(uuid.uuid4())
    await _claim(sqlite_url, op, clock=world_clock)
    gw = await start_gateway(unknown_settle=SETTLE, clock=world_clock)
    world_clock.advance(SETTLE - 5)
    with pytest.raises(grpc.aio.AioRpcError) as early:  # inside the window: asked (and taken over)
        await gw.stub.Transfer(transfer(op, 1300))
    assert early.value.code() == grpc.StatusCode.UNAVAILABLE, early.value
    assert error_info_of(early.value).reason == "OutcomeUnknown"
    # past the window counted from the send, well inside one counted from the question
    world_clock.advance(10)
    result = await gw.stub.Transfer(transfer(op, 1300))
    assert result.deriv_transaction_id > 0 and await sim.executed(f"PenPay {op}") == 1


# --- the fence at the gateway ------------------------------------------------------------------


async def test_a_leader_whose_token_the_journal_has_passed_does_not_send(
    sim: Sim, start_gateway: StartGateway, frames: FrameLog, journal_url: str
) -> None:
    gw = await start_gateway(database_url=journal_url)
    await gw.stub.Transfer(transfer(str(uuid.uuid4())))
    newer = jn.Journal.from_url(journal_url)
    try:
        await newer.raise_fence(lease_token(gw.server) + 1)  # a newer leader has written
    finally:
        await newer.close()
    tid = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Transfer(transfer(tid))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info, _ = error_info(caught.value)
    assert info is not None and info.reason == "NotLeader"
    assert await gw.server.journal.get(tid) is None and await sim.executed(f"PenPay {tid}") == 0


async def test_a_token_source_that_went_back_is_moved_past_the_journal(
    sim: Sim,
    start_gateway: StartGateway,
    redis_url: str,
    key_prefix: str,
    redis_client: Redis,
    fresh_mariadb_url: str,
) -> None:
    """Redis lost its counter (tokens restart at 1) but the journal has seen 50: the leader moves the
    counter past 50 and takes the lease again, instead of being refused forever."""
    journal = jn.Journal.from_url(fresh_mariadb_url)
    try:
        await journal.raise_fence(50)
    finally:
        await journal.close()
    lease = RedisLease(redis_url, f"{key_prefix}lease", ttl=1.0, retry=0.1)
    gw = await start_gateway(wait=False, database_url=fresh_mariadb_url, lease=lease)
    await gw.server.wait_serving(10)
    assert (lease.token or 0) > 50
    tid = str(uuid.uuid4())
    await gw.stub.Transfer(transfer(tid))
    row = await journaled(gw.server.journal, tid)
    assert row.fencing_token == lease.token and await gw.server.journal.fence() == lease.token


# --- resolve_only ------------------------------------------------------------------------------


def _resolve(tid: str, cents: int = 1300) -> pb.TransferRequest:
    request = transfer(tid, cents)
    request.resolve_only = True
    return request


async def _not_executed(call: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value
    info, _ = error_info(caught.value)
    assert info is not None and info.reason == "NOT_EXECUTED" and info.domain == "penpay.deriv-gateway"


async def test_transfer_resolve_only_never_sends(
    sim: Sim, start_gateway: StartGateway, frames: FrameLog, journal_url: str, world_clock: WorldClock
) -> None:
    # the gateway's own maximum above the agent's at Deriv: Deriv's refusal is recorded below
    gw = await start_gateway(
        database_url=journal_url,
        unknown_settle=SETTLE,
        transfer_max_cents=10_000_00,
        clock=world_clock,
    )
    journal = gw.server.journal

    # never seen: not executed, and nothing written
    nothing = str(uuid.uuid4())
    await _not_executed(gw.stub.Transfer(_resolve(nothing)))
    assert await journal.get(nothing) is None

    # done: the journal's answer
    done = str(uuid.uuid4())
    first = await gw.stub.Transfer(transfer(done, 1300))
    again = await gw.stub.Transfer(_resolve(done))
    assert again.replayed and again.deriv_transaction_id == first.deriv_transaction_id

    # failed: the recorded refusal again
    refused = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Transfer(transfer(refused, 2500_00))
    with pytest.raises(grpc.aio.AioRpcError) as replayed:
        await gw.stub.Transfer(_resolve(refused, 2500_00))
    assert replayed.value.code() == caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info_of(replayed.value).reason == "PaymentAgentTransferError"

    # another transfer under the same id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Transfer(_resolve(done, 999))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS

    # SENDING and executed (its sender died): found in the statement, recorded
    lost = str(uuid.uuid4())
    await _claim(journal_url, lost, clock=world_clock)
    await _execute_behind_the_gateway(sim, lost)
    found = await gw.stub.Transfer(_resolve(lost))
    assert found.resolved_from_statement and not found.replayed
    assert found.deriv_transaction_id == (await _books(sim, lost))["debit_transaction_id"]
    assert (await journaled(journal, lost)).status == jn.DONE

    # SENDING and not executed: unknown inside the settle window, then NOT_EXECUTED (row released)
    unsent = str(uuid.uuid4())
    await _claim(journal_url, unsent, clock=world_clock)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Transfer(_resolve(unsent))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info_of(caught.value).reason == "OutcomeUnknown"
    world_clock.advance(SETTLE + 1)
    await _not_executed(gw.stub.Transfer(_resolve(unsent)))
    assert (await journaled(journal, unsent)).status == jn.NOT_SENT
    await _not_executed(gw.stub.Transfer(_resolve(unsent)))  # and stays so

    # only the two requests without resolve_only sent a frame
    sent = [len(_money_frames(frames, op)) for op in (nothing, done, refused, lost, unsent)]
    assert sent == [0, 1, 1, 0, 0]
    # a normal request may now send the released one, once
    await gw.stub.Transfer(transfer(unsent, 1300))
    assert await sim.executed(f"PenPay {unsent}") == 1 and await sim.executed(f"PenPay {nothing}") == 0


def _withdraw(wid: str, *, token: str = "", code: str = "", cents: int = 1300) -> pb.WithdrawRequest:
    return pb.WithdrawRequest(
        withdrawal_id=wid, client_token=token, verification_code=code, amount=usd(cents), resolve_only=True
    )


async def test_withdraw_resolve_only_needs_no_code_and_never_sends(
    sim: Sim, start_gateway: StartGateway, frames: FrameLog, journal_url: str
) -> None:
    gw = await start_gateway(database_url=journal_url, unknown_settle=0.0)
    journal = gw.server.journal

    # the saga lost the answer of a withdrawal the gateway executed: the journal has it
    await gw.stub.RequestWithdrawalCode(pb.RequestWithdrawalCodeRequest(client_token=CLIENT_TOKEN))
    code = (await sim.get(f"/mailbox/{CLIENT}"))["latest"]
    done = str(uuid.uuid4())
    first = await gw.stub.Withdraw(
        pb.WithdrawRequest(
            withdrawal_id=done, client_token=CLIENT_TOKEN, verification_code=code, amount=usd(1300)
        )
    )
    again = await gw.stub.Withdraw(_withdraw(done))
    assert again.replayed and again.deriv_transaction_id == first.deriv_transaction_id

    # never reached the gateway: not executed, with or without the client's token
    await _not_executed(gw.stub.Withdraw(_withdraw(str(uuid.uuid4()))))
    await _not_executed(gw.stub.Withdraw(_withdraw(str(uuid.uuid4()), token=CLIENT_TOKEN)))

    # SENDING and executed: without the client's token, from the agent's statement (its credit) ...
    by_agent = str(uuid.uuid4())
    await _claim(journal_url, by_agent, kind="withdraw")
    await _execute_behind_the_gateway(sim, by_agent, kind="withdraw")
    found = await gw.stub.Withdraw(_withdraw(by_agent))
    assert found.resolved_from_statement and found.client_loginid == CLIENT
    assert found.deriv_transaction_id == (await _books(sim, by_agent))["credit_transaction_id"]
    assert (await journaled(journal, by_agent)).status == jn.DONE

    # ... with it, from the client's own statement (its debit, as a direct answer would say)
    by_client = str(uuid.uuid4())
    await _claim(journal_url, by_client, kind="withdraw")
    await _execute_behind_the_gateway(sim, by_client, kind="withdraw")
    found = await gw.stub.Withdraw(_withdraw(by_client, token=CLIENT_TOKEN))
    assert found.resolved_from_statement
    assert found.deriv_transaction_id == (await _books(sim, by_client))["debit_transaction_id"]

    # SENDING, never executed, settle window over: NOT_EXECUTED, and the row may be sent again
    unsent = str(uuid.uuid4())
    await _claim(journal_url, unsent, kind="withdraw")
    await _not_executed(gw.stub.Withdraw(_withdraw(unsent)))
    assert (await journaled(journal, unsent)).status == jn.NOT_SENT

    for op in (by_agent, by_client, unsent):
        assert _money_frames(frames, op) == []
        assert await sim.executed(f"PenPay {op}") == (0 if op == unsent else 1)
    # without resolve_only the code is still required
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Withdraw(
            pb.WithdrawRequest(withdrawal_id=unsent, client_token=CLIENT_TOKEN, amount=usd(1300))
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_refused_statement_does_not_make_an_executed_withdrawal_not_executed(
    sim: Sim, start_gateway: StartGateway, journal_url: str
) -> None:
    # Found by the chaos soak: the statement answered RateLimit (a "not executed" of the statement
    # call itself) and resolve_only passed it on as NOT_EXECUTED of the withdrawal, which the saga
    # then failed while Deriv had debited the user.
    gw = await start_gateway(database_url=journal_url, unknown_settle=0.0)
    executed = str(uuid.uuid4())
    await _claim(journal_url, executed, kind="withdraw")
    await _execute_behind_the_gateway(sim, executed, kind="withdraw")
    await sim.fault(kind="rate_limit", call="statement", times=1)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Withdraw(_withdraw(executed))

    info, _ = error_info(caught.value)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info is not None and info.reason == "OutcomeUnknown" and "RateLimit" in caught.value.details()
    assert (await journaled(gw.server.journal, executed)).status == jn.SENDING
    found = await gw.stub.Withdraw(_withdraw(executed))  # the statement answers again
    assert found.resolved_from_statement


async def test_only_the_gateways_own_verdict_proves_an_operation_was_not_executed(
    sim: Sim, start_gateway: StartGateway, journal_url: str, redis_url: str, key_prefix: str
) -> None:
    # Found by the chaos soak: a resolve_only Withdraw that reached the standby came back
    # NotLeader (a "not executed" of that request), the saga took it for NOT_EXECUTED of the
    # withdrawal and failed it, while Deriv had debited the user.
    from application.payments.errors import CallOutcomeUnknown, CallUnavailable, NotExecuted
    from deriv_gateway.lease import RedisLease
    from deriv_gateway.payments_client import GatewayDerivPayments
    from domain.wallet.money import Currency, Money

    key = f"{key_prefix}lease"
    leader = await start_gateway(
        database_url=journal_url, lease=RedisLease(redis_url, key, ttl=5.0, retry=0.1)
    )
    standby = await start_gateway(
        database_url=journal_url, wait=False, lease=RedisLease(redis_url, key, ttl=5.0, retry=0.1)
    )
    executed = str(uuid.uuid4())
    await _claim(journal_url, executed, kind="withdraw")
    await _execute_behind_the_gateway(sim, executed, kind="withdraw")
    amount = Money(1300, Currency.USD)
    not_proof = (CallUnavailable, CallOutcomeUnknown)  # the saga asks again later

    async with grpc.aio.insecure_channel(standby.server.address) as channel:
        with pytest.raises(not_proof):
            await GatewayDerivPayments(channel, timeout=10).withdraw(
                withdrawal_id=executed,
                client_token="",
                verification_code="",
                amount=amount,
                resolve_only=True,
            )
    async with grpc.aio.insecure_channel(leader.server.address) as channel:
        client = GatewayDerivPayments(channel, timeout=10)
        await sim.fault(kind="rate_limit", call="statement", times=1)
        with pytest.raises(not_proof):
            await client.withdraw(
                withdrawal_id=executed,
                client_token="",
                verification_code="",
                amount=amount,
                resolve_only=True,
            )
        found = await client.withdraw(
            withdrawal_id=executed, client_token="", verification_code="", amount=amount, resolve_only=True
        )
        assert found.deriv_transaction_id
        with pytest.raises(NotExecuted):  # never sent: the gateway's own proof
            await client.withdraw(
                withdrawal_id=str(uuid.uuid4()),
                client_token="",
                verification_code="",
                amount=amount,
                resolve_only=True,
            )


async def test_a_send_that_meets_an_unresolved_earlier_send_answers_outcome_unknown_not_held_back(
    sim: Sim, start_gateway: StartGateway, journal_url: str
) -> None:
    # RESOURCE_EXHAUSTED tells the caller "held back, nothing moved": ConfirmWithdrawal then lets the
    # user confirm again and the code-expiry rule may fail the withdrawal. For an operation whose
    # earlier frame may have executed, a rate-limited statement lookup must say "outcome unknown".
    gw = await start_gateway(database_url=journal_url, unknown_settle=0.0)
    earlier = str(uuid.uuid4())
    await _claim(journal_url, earlier)
    await _execute_behind_the_gateway(sim, earlier)
    await sim.fault(kind="rate_limit", call="statement", times=1)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Transfer(transfer(earlier, cents=1300))

    info, _ = error_info(caught.value)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info is not None and info.reason == "OutcomeUnknown" and info.metadata["outcome"] == "unknown"
    assert (await journaled(gw.server.journal, earlier)).status == jn.SENDING
    again = await gw.stub.Transfer(transfer(earlier, cents=1300))  # the statement answers now
    assert again.resolved_from_statement  # found, not sent again
    await _books(sim, earlier)  # exactly one transfer with this reference

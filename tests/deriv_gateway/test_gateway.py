"""The gateway over real sockets: gRPC -> gateway -> WebSocket -> Deriv simulator.

The journal runs on MariaDB and on SQLite; leadership on the real Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import IO, Any

import grpc
import pytest
from google.rpc import error_details_pb2
from redis.asyncio import Redis
from sqlalchemy import event

from deriv_gateway import journal as jn
from deriv_gateway.grpc_errors import parse_details
from deriv_gateway.journal import mariadb as journal_mariadb
from deriv_gateway.journal.sqlite import SQLiteGroupCommit
from deriv_gateway.lease import RedisLease
from deriv_gateway.simulator import DEFAULT_AGENT_LOGINID, DEFAULT_AGENT_TOKEN, DEFAULT_CLIENTS
from penpay.common.v1 import money_pb2
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc
from persistence.engine import create_engine
from tests.clocks import SteppingClock
from tests.conftest import REPO_ROOT
from tests.deriv_gateway.conftest import FrameLog, Sim, StartGateway, journaled, lease_token

pytestmark = pytest.mark.integration

CLIENT = "CR90000001"
CLIENT_TOKEN = DEFAULT_CLIENTS[CLIENT]


def usd(cents: int) -> money_pb2.Money:
    return money_pb2.Money(amount_cents=cents, currency="USD")


def transfer(tid: str, cents: int = 1250, loginid: str = CLIENT) -> pb.TransferRequest:
    return pb.TransferRequest(transfer_id=tid, client_loginid=loginid, amount=usd(cents))


def error_info(exc: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo | None, list[Any]]:
    status = parse_details(exc.trailing_metadata())
    assert status is not None, "no grpc-status-details-bin"
    info, others = None, []
    for any_ in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo, error_details_pb2.BadRequest):
            if any_.Is(cls.DESCRIPTOR):
                msg = cls()
                any_.Unpack(msg)
                if isinstance(msg, error_details_pb2.ErrorInfo):
                    info = msg
                else:
                    others.append(msg)
    return info, others


def _stdout(process: subprocess.Popen[str]) -> IO[str]:
    assert process.stdout is not None, "started without stdout=PIPE"
    return process.stdout


def error_info_of(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo the refusal must carry."""
    info, _ = error_info(exc)
    assert info is not None, "no ErrorInfo in the details"
    return info


async def test_transfer_executes_once_and_a_repeat_replays_the_first_result(
    sim: Sim, start_gateway: StartGateway, journal_url: str
) -> None:
    gw = await start_gateway(database_url=journal_url)
    tid = str(uuid.uuid4())
    first = await gw.stub.Transfer(transfer(tid, 1050))
    assert first.deriv_transaction_id > 0 and first.client_full_name == "Alice Wanjiru"
    assert not first.replayed
    again = await gw.stub.Transfer(transfer(tid, 1050))
    assert again.replayed and again.deriv_transaction_id == first.deriv_transaction_id
    assert await sim.executed(f"PenPay {tid}") == 1
    # the same id for a different transfer is refused, not executed
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.Transfer(transfer(tid, 2000))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    row = await gw.server.journal.get(tid)
    assert row is not None and row.status == jn.DONE and row.fencing_token == 1
    assert row.deriv_transaction_id == first.deriv_transaction_id and row.description == f"PenPay {tid}"


async def test_transfer_cut_after_the_frame_was_sent_resolves_to_exactly_one(
    sim: Sim, start_gateway: StartGateway, journal_url: str
) -> None:
    gw = await start_gateway(database_url=journal_url)
    tid = str(uuid.uuid4())
    await sim.fault(kind="drop_after", call="paymentagent_transfer", match={"description": tid}, times=1)
    result = await gw.stub.Transfer(transfer(tid, 1500))
    assert result.resolved_from_statement and result.deriv_transaction_id > 0
    assert gw.server.gateway.agent.connects >= 2  # it reconnected to look at the statement
    assert await sim.executed(f"PenPay {tid}") == 1
    replay = await gw.stub.Transfer(transfer(tid, 1500))
    assert replay.replayed and replay.deriv_transaction_id == result.deriv_transaction_id
    assert await sim.executed(f"PenPay {tid}") == 1


async def test_twenty_concurrent_calls_with_one_id_execute_once(
    sim: Sim, start_gateway: StartGateway, journal_url: str, frames: FrameLog
) -> None:
    gw = await start_gateway(database_url=journal_url)
    tid = str(uuid.uuid4())
    results = await asyncio.gather(*(gw.stub.Transfer(transfer(tid, 1100)) for _ in range(20)))
    assert len({r.deriv_transaction_id for r in results}) == 1
    assert await sim.executed(f"PenPay {tid}") == 1
    assert len([f for f in frames.sent("paymentagent_transfer") if tid in f["description"]]) == 1


async def test_two_gateway_processes_racing_on_one_id_the_primary_key_decides(fresh_mariadb_url: str) -> None:
    journals = [jn.Journal.from_url(fresh_mariadb_url) for _ in range(2)]
    tid = str(uuid.uuid4())
    try:
        claims = await asyncio.gather(
            *(
                j.claim(
                    operation_id=tid,
                    kind="transfer",
                    client_loginid=CLIENT,
                    amount_cents=100,
                    currency="USD",
                    description=f"PenPay {tid}",
                    token=5,
                )
                for j in journals
            )
        )
        assert sorted(created for created, _ in claims) == [False, True]
        winner = next(row for created, row in claims if created)
        assert winner.fencing_token is not None
        # a stale fencing token may not record; the owner may; a newer token can take over
        with pytest.raises(jn.StaleFencingToken):
            await journals[0].finish(tid, winner.fencing_token - 1, jn.DONE, deriv_transaction_id=1)
        await journals[0].take_over(tid, 9)
        with pytest.raises(jn.StaleFencingToken):
            await journals[1].finish(tid, winner.fencing_token, jn.DONE, deriv_transaction_id=1)
        with pytest.raises(jn.StaleFencingToken):
            await journals[1].take_over(tid, 8)
        await journals[1].finish(tid, 9, jn.DONE, deriv_transaction_id=9_000_001)
        row = await journals[0].get(tid)
        assert row is not None and row.status == jn.DONE and row.fencing_token == 9
    finally:
        for j in journals:
            await j.close()


async def _claim(journal: jn.Journal, op: str, token: int) -> tuple[bool, jn.Operation]:
    return await journal.claim(
        operation_id=op,
        kind="transfer",
        client_loginid=CLIENT,
        amount_cents=100,
        currency="USD",
        description=f"PenPay {op}",
        token=token,
    )


@pytest.mark.parametrize("group_commit", [True, False], ids=["group-commit", "one-by-one"])
async def test_a_deposed_leader_cannot_claim_once_a_newer_leader_has_written(
    journal_url: str, group_commit: bool
) -> None:
    old = jn.Journal(create_engine(journal_url), owns_engine=True, group_commit=group_commit)
    new = jn.Journal(create_engine(journal_url), owns_engine=True, group_commit=group_commit)
    try:
        before = str(uuid.uuid4())
        assert (await _claim(old, before, 3))[0]
        await new.raise_fence(4)
        assert await new.fence() == 4
        late = str(uuid.uuid4())
        with pytest.raises(jn.StaleFencingToken) as refused:
            await _claim(old, late, 3)
        assert refused.value.current == 4
        assert await old.get(late) is None
        # nor may it take a row over or send one again
        with pytest.raises(jn.StaleFencingToken):
            await old.take_over(before, 3)
        # the new leader works as usual (equal tokens pass the fence)
        assert (await _claim(new, late, 4))[0]
        await new.take_over(before, 4)

        # racing: old-leader claims around a raise; none that starts after the raise committed succeeds,
        # and every one that succeeded is in the journal (so the new leader's sweep finds it)
        async def old_claim(op: str) -> bool:
            try:
                return (await _claim(old, op, 4))[0]
            except jn.StaleFencingToken:
                return False

        ops = [str(uuid.uuid4()) for _ in range(30)]
        racing = [asyncio.create_task(old_claim(op)) for op in ops[:20]]
        await new.raise_fence(5)
        after = [await old_claim(op) for op in ops[20:]]
        outcomes = await asyncio.gather(*racing)
        assert not any(after)
        for op, ok in zip(ops[:20], outcomes, strict=True):
            assert (await new.get(op) is not None) == ok
    finally:
        await old.close()
        await new.close()


async def _raw_transfer(sim: Sim, description: str, cents: int) -> None:
    """A transfer executed behind the gateway's back, as if a dead process had sent it."""
    from deriv_gateway.connection import ClientSession

    async with ClientSession(sim.ws_url, "1089", DEFAULT_AGENT_TOKEN) as agent:
        await agent.request(
            "paymentagent_transfer",
            {"amount": cents / 100, "currency": "USD", "transfer_to": CLIENT, "description": description},
        )


async def test_after_a_crash_a_sending_row_is_resolved_from_the_statement_first(
    sim: Sim, start_gateway: StartGateway, journal_url: str
) -> None:
    # process A wrote SENDING, sent the frame and died; Deriv executed it
    tid, lost = str(uuid.uuid4()), str(uuid.uuid4())
    journal = jn.Journal.from_url(journal_url)
    try:
        for op in (tid, lost):
            await journal.claim(
                operation_id=op,
                kind="transfer",
                client_loginid=CLIENT,
                amount_cents=1300,
                currency="USD",
                description=f"PenPay {op}",
                token=1,
            )
    finally:
        await journal.close()
    await _raw_transfer(sim, f"PenPay {tid}", 1300)

    gw = await start_gateway(database_url=journal_url, unknown_settle=0.0)
    result = await gw.stub.Transfer(transfer(tid, 1300))
    assert result.resolved_from_statement
    assert await sim.executed(f"PenPay {tid}") == 1
    # the other one never reached Deriv: not in the statement (and settled), so it is sent now, once
    result = await gw.stub.Transfer(transfer(lost, 1300))
    assert not result.resolved_from_statement
    assert await sim.executed(f"PenPay {lost}") == 1
    row = await gw.server.journal.get(lost)
    assert row is not None and row.attempts == 2 and row.status == jn.DONE


async def test_unknown_outcome_within_the_settle_window_is_not_resent(
    sim: Sim, start_gateway: StartGateway, sqlite_url: str
) -> None:
    tid = str(uuid.uuid4())
    journal = jn.Journal.from_url(sqlite_url)
    await journal.claim(
        operation_id=tid,
        kind="transfer",
        client_loginid=CLIENT,
        amount_cents=1300,
        currency="USD",
        description=f"PenPay {tid}",
        token=1,
    )
    await journal.close()
    gw = await start_gateway(unknown_settle=30.0)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await gw.stub.Transfer(transfer(tid, 1300))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await sim.executed(f"PenPay {tid}") == 0


async def test_reconnect_restores_authorization_and_the_balance_stream(
    sim: Sim, start_gateway: StartGateway
) -> None:
    gw = await start_gateway()
    updates: asyncio.Queue[pb.WatchBalanceResponse] = asyncio.Queue()

    async def watch() -> None:
        async for update in gw.stub.WatchBalance(pb.WatchBalanceRequest()):
            updates.put_nowait(update)

    watcher = asyncio.create_task(watch())
    try:
        initial = await asyncio.wait_for(updates.get(), 5)
        assert initial.loginid == DEFAULT_AGENT_LOGINID
        assert await sim.drop_connections() >= 1
        deadline = time.monotonic() + 5
        while gw.server.gateway.agent.connects < 2 or not gw.server.gateway.agent.ready:
            assert time.monotonic() < deadline, "did not reconnect"
            await asyncio.sleep(0.02)
        resubscribed = await asyncio.wait_for(updates.get(), 5)  # the re-subscription's first message
        assert resubscribed.balance.amount_cents == initial.balance.amount_cents
        # authorized again: an agent-only call works, and the stream carries its effect
        await gw.stub.Transfer(transfer(str(uuid.uuid4()), 2000))
        update = await asyncio.wait_for(updates.get(), 5)
        assert update.balance.amount_cents == initial.balance.amount_cents - 2000
        balance = await gw.stub.GetBalance(pb.GetBalanceRequest())
        assert balance.balance.amount_cents == update.balance.amount_cents
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await watcher


async def test_the_balance_stream_is_open_only_while_someone_watches(
    sim: Sim, start_gateway: StartGateway, frames: FrameLog
) -> None:
    """Deriv pushes a balance message after every transfer: the gateway subscribes only while
    WatchBalance has a watcher, and tells Deriv to forget the stream when the last one leaves."""
    gw = await start_gateway()

    def subscribed() -> list[dict[str, Any]]:
        return [f for f in frames.sent("balance") if f.get("subscribe") == 1]

    def pushed() -> list[dict[str, Any]]:  # stream messages carry "subscription"; replies do not
        received = [f for d, f in frames.frames if d == "recv"]
        return [f for f in received if f.get("msg_type") == "balance" and "subscription" in f]

    async def settled() -> None:  # a round trip on the agent's socket: every earlier push is in
        await gw.stub.GetBalance(pb.GetBalanceRequest())

    await gw.stub.Transfer(transfer(str(uuid.uuid4()), 1000))
    await settled()
    assert subscribed() == [] and pushed() == []

    updates: asyncio.Queue[pb.WatchBalanceResponse] = asyncio.Queue()

    async def watch() -> None:
        async for update in gw.stub.WatchBalance(pb.WatchBalanceRequest()):
            updates.put_nowait(update)

    watcher = asyncio.create_task(watch())
    try:
        initial = await asyncio.wait_for(updates.get(), 5)
        await gw.stub.Transfer(transfer(str(uuid.uuid4()), 1000))
        update = await asyncio.wait_for(updates.get(), 5)
        assert update.balance.amount_cents == initial.balance.amount_cents - 1000
        assert len(subscribed()) == 1
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await watcher
    deadline = time.monotonic() + 5
    while not frames.sent("forget"):
        assert time.monotonic() < deadline, "the balance stream was not forgotten"
        await asyncio.sleep(0.02)
    seen = len(pushed())
    await gw.stub.Transfer(transfer(str(uuid.uuid4()), 1000))
    await settled()
    assert len(pushed()) == seen


async def test_rate_limit_and_timeouts_surface_as_clear_grpc_statuses(
    sim: Sim, start_gateway: StartGateway
) -> None:
    gw = await start_gateway(request_timeout=1.0)
    tid = str(uuid.uuid4())
    await sim.fault(kind="rate_limit", call="paymentagent_transfer", times=1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Transfer(transfer(tid))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, others = error_info(caught.value)
    assert info is not None and info.reason == "RateLimit" and info.domain == "deriv.com"
    assert info.metadata["outcome"] == "not_executed"
    assert any(isinstance(o, error_details_pb2.RetryInfo) for o in others)
    row = await gw.server.journal.get(tid)
    assert row is not None and row.status == jn.NOT_SENT
    # nothing executed, so the retry with the same id sends (once)
    await gw.stub.Transfer(transfer(tid))
    assert await sim.executed(f"PenPay {tid}") == 1

    # Deriv's own Timeout error on a call that was NOT executed: the statement says so, DEADLINE_EXCEEDED
    tid2 = str(uuid.uuid4())
    await sim.fault(kind="timeout", call="paymentagent_transfer", execute=False, delay=0.2, times=1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Transfer(transfer(tid2))
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    info, _ = error_info(caught.value)
    assert info is not None and info.reason == "Timeout" and info.metadata["outcome"] == "unknown"
    assert await sim.executed(f"PenPay {tid2}") == 0

    # Timeout after executing: resolved from the statement, success, exactly once
    tid3 = str(uuid.uuid4())
    await sim.fault(kind="timeout", call="paymentagent_transfer", delay=0.2, times=1)
    result = await gw.stub.Transfer(transfer(tid3))
    assert result.resolved_from_statement and await sim.executed(f"PenPay {tid3}") == 1

    # client-side timeout (no reply at all within request_timeout)
    await sim.fault(kind="delay", call="balance", delay=2.5, times=1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.GetBalance(pb.GetBalanceRequest())
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    info, _ = error_info(caught.value)
    assert info is not None and info.reason == "ClientTimeout"


async def test_a_transfer_our_limiter_cannot_fit_before_its_deadline_is_deferred_unsent(
    sim: Sim, start_gateway: StartGateway, frames: FrameLog
) -> None:
    from application.payments.errors import CallDeferred
    from deriv_gateway.payments_client import GatewayDerivPayments
    from deriv_gateway.protocol.ratelimit import CallLimits
    from domain.user.deriv_login_id import DerivLoginId
    from domain.wallet.money import Currency, Money

    gw = await start_gateway(request_timeout=1.0)
    gw.server.gateway.agent.limiter.configure(CallLimits(general_minutely=2))
    client = GatewayDerivPayments(gw.channel, timeout=5.0)
    amount, loginid = Money(1250, Currency.USD), DerivLoginId(CLIENT)
    for _ in range(2):  # the minute's allowance
        await client.transfer(transfer_id=str(uuid.uuid4()), loginid=loginid, amount=amount)

    held = str(uuid.uuid4())
    with pytest.raises(CallDeferred) as deferred:
        await client.transfer(transfer_id=held, loginid=loginid, amount=amount)

    assert 55.0 < deferred.value.retry_after <= 60.0  # when the window has room again, not a guess
    assert await sim.executed(f"PenPay {held}") == 0
    row = await gw.server.journal.get(held)
    assert row is not None and row.status == jn.NOT_SENT  # free to be sent later, same id
    assert not [f for f in frames.sent("paymentagent_transfer") if f.get("description") == f"PenPay {held}"]


async def test_a_gateway_nobody_can_connect_to_defers_the_call_and_a_running_one_does_not() -> None:
    import socket

    from application.payments.errors import CallDeferred
    from deriv_gateway.payments_client import GatewayDerivPayments
    from domain.user.deriv_login_id import DerivLoginId
    from domain.wallet.money import Currency, Money

    with socket.socket() as probe:  # a port nothing listens on: the gateway is down
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    amount, loginid = Money(1250, Currency.USD), DerivLoginId(CLIENT)

    async with grpc.aio.insecure_channel(dead) as channel:
        with pytest.raises(CallDeferred) as deferred:
            await GatewayDerivPayments(channel, timeout=5.0).transfer(
                transfer_id=str(uuid.uuid4()), loginid=loginid, amount=amount
            )

    # never sent, so not an attempt: the saga waits a moment (a failover takes seconds)
    assert deferred.value.code == "GATEWAY_UNREACHABLE" and 0 < deferred.value.retry_after <= 5


async def test_an_unavailable_answer_from_a_running_gateway_is_not_taken_for_unsent(
    sim: Sim, start_gateway: StartGateway
) -> None:
    from application.payments.errors import CallOutcomeUnknown
    from deriv_gateway.payments_client import GatewayDerivPayments
    from domain.user.deriv_login_id import DerivLoginId
    from domain.wallet.money import Currency, Money

    gw = await start_gateway()
    await sim.fault(kind="drop_before", call="paymentagent_transfer", times=1)  # Deriv's socket drops

    # UNAVAILABLE too, but from a gateway that received the call: never "held back, nothing moved"
    with pytest.raises(CallOutcomeUnknown):
        await GatewayDerivPayments(gw.channel, timeout=10.0).transfer(
            transfer_id=str(uuid.uuid4()), loginid=DerivLoginId(CLIENT), amount=Money(1250, Currency.USD)
        )


async def test_a_new_withdrawal_reads_no_journal_row_before_its_claim(
    sim: Sim, start_gateway: StartGateway
) -> None:
    """The claim's insert finds a row that exists, so a new withdrawal costs no read of the journal
    first; one that ended is replayed from its row even when the client's token opens no session."""
    gw = await start_gateway()
    await gw.stub.RequestWithdrawalCode(pb.RequestWithdrawalCodeRequest(client_token=CLIENT_TOKEN))
    code = (await sim.get(f"/mailbox/{CLIENT}"))["latest"]
    reads: list[str] = []

    def statement(_conn: Any, _cursor: Any, text: str, *_: Any) -> None:
        if " ".join(text.split()).startswith("SELECT deriv_gateway_operations.operation_id"):
            reads.append(text)

    engine = gw.server.gateway.journal.engine.sync_engine
    event.listen(engine, "before_cursor_execute", statement)
    wid = str(uuid.uuid4())
    try:
        done = await gw.stub.Withdraw(
            pb.WithdrawRequest(
                withdrawal_id=wid, client_token=CLIENT_TOKEN, verification_code=code, amount=usd(2500)
            )
        )
    finally:
        event.remove(engine, "before_cursor_execute", statement)
    assert not done.replayed and reads == []

    again = await gw.stub.Withdraw(
        pb.WithdrawRequest(
            withdrawal_id=wid, client_token="no-such-token", verification_code=code, amount=usd(2500)
        )
    )
    assert again.replayed and again.deriv_transaction_id == done.deriv_transaction_id
    assert await sim.executed(f"PenPay {wid}") == 1


async def test_withdrawal_flow_on_the_clients_own_connection(
    sim: Sim, start_gateway: StartGateway, frames: FrameLog
) -> None:
    # the gateway's own maximum above the agent's at Deriv (changed there): Deriv's refusal is met below
    gw = await start_gateway(transfer_max_cents=10_000_00)
    auth = await gw.stub.Authorize(pb.AuthorizeRequest(client_token=CLIENT_TOKEN))
    assert (auth.loginid, auth.currency, auth.is_virtual) == (CLIENT, "USD", False)
    assert "payments" in auth.scopes and auth.email
    settings = await gw.stub.GetSettings(pb.GetSettingsRequest(client_token=CLIENT_TOKEN))
    assert settings.client_loginid == CLIENT and settings.first_name == "Alice"

    sent = await gw.stub.RequestWithdrawalCode(pb.RequestWithdrawalCodeRequest(client_token=CLIENT_TOKEN))
    assert sent.client_loginid == CLIENT
    code = (await sim.get(f"/mailbox/{CLIENT}"))["latest"]
    assert code
    wid = str(uuid.uuid4())
    # the reply is lost after Deriv executed the withdrawal: resolved through the agent's statement
    await sim.fault(kind="drop_after", call="paymentagent_withdraw", times=1)
    result = await gw.stub.Withdraw(
        pb.WithdrawRequest(
            withdrawal_id=wid, client_token=CLIENT_TOKEN, verification_code=code, amount=usd(2500)
        )
    )
    assert result.resolved_from_statement and result.client_loginid == CLIENT
    assert await sim.executed(f"PenPay {wid}") == 1
    again = await gw.stub.Withdraw(
        pb.WithdrawRequest(
            withdrawal_id=wid, client_token=CLIENT_TOKEN, verification_code=code, amount=usd(2500)
        )
    )
    assert again.replayed and again.deriv_transaction_id == result.deriv_transaction_id
    assert await sim.executed(f"PenPay {wid}") == 1

    # the agent connection stayed the agent's; client calls went over their own sockets
    assert gw.server.gateway.agent.loginid == DEFAULT_AGENT_LOGINID
    assert len(frames.sent("authorize")) >= 5

    # a used code: Deriv's InvalidToken on paymentagent_withdraw -> FAILED_PRECONDITION, nothing executed
    wid2 = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Withdraw(
            pb.WithdrawRequest(
                withdrawal_id=wid2, client_token=CLIENT_TOKEN, verification_code=code, amount=usd(1000)
            )
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info, _ = error_info(caught.value)
    assert info is not None and info.reason == "InvalidToken"
    # read-only token: PERMISSION_DENIED; unknown token: INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Withdraw(
            pb.WithdrawRequest(
                withdrawal_id=str(uuid.uuid4()),
                client_token="sim-client1-read",
                verification_code="abcdefgh",
                amount=usd(1000),
            )
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gw.stub.Authorize(pb.AuthorizeRequest(client_token="no-such-token"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a refusal (over the per-transfer maximum) is a failed precondition, recorded and replayed as such
    tid = str(uuid.uuid4())
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gw.stub.Transfer(transfer(tid, 2500_00, loginid="CR90000003"))
        assert caught.value.code() in (grpc.StatusCode.FAILED_PRECONDITION,)
    assert await sim.executed(f"PenPay {tid}") == 0


async def test_no_token_reaches_a_log_line(
    sim: Sim,
    start_gateway: StartGateway,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import structlog

    structlog.reset_defaults()
    gw = await start_gateway()
    await gw.stub.Authorize(pb.AuthorizeRequest(client_token=CLIENT_TOKEN))
    with pytest.raises(grpc.aio.AioRpcError):
        await gw.stub.Authorize(pb.AuthorizeRequest(client_token="sim-bad-token-xyz"))
    await gw.stub.Transfer(transfer(str(uuid.uuid4())))
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert "gateway.sent" in text or "deriv.connected" in text
    for secret in (DEFAULT_AGENT_TOKEN, CLIENT_TOKEN, "sim-bad-token-xyz"):
        assert secret not in text


# --- leadership ---------------------------------------------------------------------------------


async def test_a_deposed_leader_stops_sending_and_the_standby_takes_over(
    sim: Sim, start_gateway: StartGateway, redis_url: str, key_prefix: str, redis_client: Redis
) -> None:
    key = f"{key_prefix}lease"
    # A TTL of 3 s: with 1 s, a leader whose loop stalled 0.7 s under a loaded CI lost its lease
    # (rightly: a stalled leader must) and the test's next call met no leader.
    ttl = 3.0
    lease_a = RedisLease(redis_url, key, ttl=ttl, retry=0.1)
    a = await start_gateway(lease=lease_a)
    b = await start_gateway(wait=False, lease=RedisLease(redis_url, key, ttl=ttl, retry=0.1))
    await asyncio.sleep(0.3)
    assert a.server.lease.is_leader and not b.server.lease.is_leader
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await b.stub.Transfer(transfer(str(uuid.uuid4())))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    await a.stub.Transfer(transfer(str(uuid.uuid4())))

    lease_a.kill_renewer()  # A hangs: it can no longer renew
    started = time.monotonic()
    await b.server.wait_serving(ttl + 5)
    took = time.monotonic() - started
    assert took < ttl + 0.1 + 1.0, took
    assert not a.server.lease.is_leader  # its local deadline passed before Redis let B in
    assert b.server.lease.token > lease_a.token
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await a.stub.Transfer(transfer(str(uuid.uuid4())))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    tid = str(uuid.uuid4())
    await b.stub.Transfer(transfer(tid))
    assert await sim.executed(f"PenPay {tid}") == 1


async def test_leader_process_dies_and_the_standby_serves_within_the_bound(
    sim: Sim,
    start_gateway: StartGateway,
    redis_url: str,
    key_prefix: str,
    redis_client: Redis,
    fresh_mariadb_url: str,
) -> None:
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
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.DerivGatewayServiceStub(channel)
            deadline = time.monotonic() + 10
            while True:
                try:
                    await stub.Transfer(transfer(str(uuid.uuid4())))
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                    await asyncio.sleep(0.05)

            standby = await start_gateway(
                wait=False,
                database_url=fresh_mariadb_url,
                lease=RedisLease(redis_url, key, ttl=ttl, retry=retry),
            )
            await asyncio.sleep(0.5)
            assert not standby.server.lease.is_leader
            # a standby refuses the balance stream as a standby (UNAVAILABLE: try the leader)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in standby.stub.WatchBalance(pb.WatchBalanceRequest()):
                    pass
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

            leader.kill()  # SIGKILL: no release, the lease must expire
            leader.wait(5)
            died = time.monotonic()
            tid = str(uuid.uuid4())
            while True:
                try:
                    result = await standby.stub.Transfer(transfer(tid))
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE
                    assert time.monotonic() - died < ttl + retry + 2.0, "standby did not take over in time"
                    await asyncio.sleep(0.02)
            took = time.monotonic() - died
            assert took < ttl + retry + 2.0
            assert result.deriv_transaction_id > 0 and await sim.executed(f"PenPay {tid}") == 1
            row = await standby.server.journal.get(tid)
            assert row is not None and row.fencing_token == lease_token(standby.server) >= 2
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait(5)


async def test_every_frame_matches_the_official_schemas(
    sim: Sim, start_gateway: StartGateway, frames: FrameLog
) -> None:
    """A tour of every call the gateway makes; the `frames` fixture validates them at teardown."""
    gw = await start_gateway()
    await gw.stub.Transfer(transfer(str(uuid.uuid4())))
    await gw.stub.GetBalance(pb.GetBalanceRequest())
    await gw.stub.GetSettings(pb.GetSettingsRequest(client_token=CLIENT_TOKEN))
    await gw.stub.RequestWithdrawalCode(pb.RequestWithdrawalCodeRequest(client_token=CLIENT_TOKEN))
    await gw.server.gateway.statements.find("PenPay nothing-here", gw.server.gateway.clock.now())
    await gw.server.gateway.agent.request("ping")
    calls = {next(iter(f)) for d, f in frames.frames if d == "send"}
    assert {
        "authorize",
        "website_status",
        "balance",
        "paymentagent_transfer",
        "get_settings",
        "verify_email",
        "statement",
        "ping",
    } <= calls
    assert not frames.problems()


async def test_batched_claims_and_outcomes_keep_their_own_answers(
    journal_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims and outcomes committed together (group commit): every caller still gets its own row's answer."""
    sizes: list[int] = []  # MariaDB: the outcomes per multi-row UPDATE (SQLite writes them one by one)
    original = journal_mariadb.finish_rows

    async def spy(cur: Any, items: list[dict[str, Any]], optimistic: bool) -> Any:
        sizes.append(len(items))
        return await original(cur, items, optimistic)

    monkeypatch.setattr(journal_mariadb, "finish_rows", spy)
    journal, newer = jn.Journal.from_url(journal_url), jn.Journal.from_url(journal_url)
    try:
        known = [str(uuid.uuid4()) for _ in range(3)]
        for op in known:
            assert (await _claim(journal, op, 1))[0]
        new = [str(uuid.uuid4()) for _ in range(6)]
        # one batch of claims, three ids already taken: those are reported as existing, the rest created
        claims = await asyncio.gather(*(_claim(journal, op, 1) for op in known + new))
        assert [created for created, _ in claims] == [False] * 3 + [True] * 6

        await newer.take_over(new[0], 2)  # a newer leader took this row
        await journal.finish(new[1], 1, jn.DONE, deriv_transaction_id=7_000_001)  # already recorded
        outcomes = await asyncio.gather(
            *(
                journal.finish(op, 1, jn.DONE, deriv_transaction_id=7_000_010 + i, result={"n": i})
                for i, op in enumerate(new[:5])
            ),
            return_exceptions=True,
        )
        assert [type(o).__name__ for o in outcomes] == ["StaleFencingToken"] * 2 + ["NoneType"] * 3
        # the same row twice in one batch: the first outcome counts
        pair = await asyncio.gather(
            journal.finish(new[5], 1, jn.DONE, deriv_transaction_id=7_000_015, result={"n": 5}),
            journal.finish(new[5], 1, jn.FAILED, error_code="Late"),
            return_exceptions=True,
        )
        assert [type(o).__name__ for o in pair] == ["NoneType", "StaleFencingToken"]
        if "mysql" in journal_url:
            assert sizes[-2:] == [5, 2], sizes  # each gather was written as one batch
        rows = [await journaled(journal, op) for op in new]
        assert (rows[0].status, rows[0].fencing_token) == (jn.SENDING, 2)
        assert (rows[1].status, rows[1].deriv_transaction_id) == (jn.DONE, 7_000_001)
        for i, row in enumerate(rows[2:], start=2):
            assert (row.status, row.deriv_transaction_id, row.result, row.error_code) == (
                jn.DONE,
                7_000_010 + i,
                {"n": i},
                None,
            )
    finally:
        await journal.close()
        await newer.close()


async def test_the_sqlite_lane_writes_rows_the_engine_reads_back_exactly(sqlite_url: str) -> None:
    """The SQLite batches bypass SQLAlchemy (one thread hop per batch): what they write must read back
    through the engine as SQLAlchemy itself would have stored it, timestamps to the microsecond."""
    # a stamp with microseconds, to see them read back; every reading is later than the one before
    clock = SteppingClock(datetime(2026, 12, 6, 12, 0, 0, 123_456, tzinfo=UTC))
    journal = jn.Journal.from_url(sqlite_url, clock=clock)
    try:
        assert isinstance(journal._group, SQLiteGroupCommit)
        op = str(uuid.uuid4())
        before = clock.now()
        created, claimed = await _claim(journal, op, 1)
        assert created
        row = await journal.get(op)
        assert row is not None and (row.created_at, row.updated_at) == (
            claimed.created_at,
            claimed.updated_at,
        )
        assert row.created_at >= before and row.created_at.tzinfo is not None
        assert [r.operation_id for r in await journal.list_sending(sent_before=clock.now())] == [op]
        assert await journal.list_sending(sent_before=before) == []

        await journal.finish(
            op, 1, jn.DONE, deriv_transaction_id=7_100_001, result={"counterparty_name": "Ann"}
        )
        done = await journal.get(op)
        assert done is not None
        assert (done.status, done.deriv_transaction_id, done.result) == (
            jn.DONE,
            7_100_001,
            {"counterparty_name": "Ann"},
        )
        assert done.updated_at >= row.updated_at and done.created_at == row.created_at
    finally:
        await journal.close()

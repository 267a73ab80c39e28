"""Stopping the gateway: every step ends or is left behind within its limit, named in the log, and
nothing that waited on a closed journal waits for ever."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from deriv_gateway import journal as jn
from deriv_gateway.config import GatewayConfig
from deriv_gateway.journal.group_commit import GroupCommit
from deriv_gateway.lease import RedisLease
from deriv_gateway.server import GatewayServer

pytestmark = pytest.mark.integration


async def _claim(server: GatewayServer, token: int) -> tuple[bool, jn.Operation]:
    op = str(uuid.uuid4())
    return await server.journal.claim(
        operation_id=op,
        kind="transfer",
        client_loginid="CR90000001",
        amount_cents=1300,
        currency="USD",
        description=f"PenPay {op}",
        token=token,
    )


async def test_a_stop_whose_journal_cannot_close_ends_and_names_where_it_waited(
    make_config: Callable[..., GatewayConfig], sqlite_url: str
) -> None:
    server = GatewayServer(make_config())
    await server.start()
    await server.wait_serving(10)
    token = server.lease.token
    assert token is not None
    created, _ = await _claim(server, token)  # the lane's thread and connection exist
    assert created

    # another connection (as another process would) holds the file's write lock: the next claim's
    # batch waits for it in the lane's thread
    holder = sqlite3.connect(Path(make_url(sqlite_url).database or ""), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        waiting = asyncio.create_task(_claim(server, token))
        lane = server.journal._group  # the one lane of a SQLite journal
        assert isinstance(lane, GroupCommit)
        while lane._queue or (not waiting.done() and not lane._tasks):
            await asyncio.sleep(0)  # until the committer has handed the batch to the lane's thread
        assert not waiting.done()

        await server.stop(grace=0.1, step_limit=0.3)

        assert [o.step for o in server.stop_overruns] == ["journal"]
        assert "journal/sqlite.py" in server.stop_overruns[0].waiting_at
        with pytest.raises(jn.JournalClosed):  # told, not left waiting for a commit it cannot see
            await waiting
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # the lock gone, the step left behind ends by itself
    await asyncio.wait_for(server.stop_overruns[0].task, 30)


@pytest.mark.parametrize("took_over", [False, True], ids=["during-takeover", "after-takeover"])
async def test_two_gateways_on_one_sqlite_file_stop_in_turn_with_nothing_left_behind(
    make_config: Callable[..., GatewayConfig], redis_url: str, key_prefix: str, took_over: bool
) -> None:
    # CI once hung 300 s in this teardown (leader then standby, one SQLite journal): now every
    # step is bounded, and an overrun is named here instead of waiting for the test's timeout
    key = f"{key_prefix}lease"
    leader = GatewayServer(make_config(), lease=RedisLease(redis_url, key, ttl=5.0, retry=0.05))
    standby = GatewayServer(make_config(), lease=RedisLease(redis_url, key, ttl=5.0, retry=0.05))
    await leader.start()
    await leader.wait_serving(10)
    await standby.start()
    token = leader.lease.token
    assert token is not None
    claims = [asyncio.create_task(_claim(leader, token)) for _ in range(20)]
    await leader.stop(grace=0.1)
    if took_over:  # else the standby is stopped while it takes the lease the leader released
        await standby.wait_serving(10)
    await standby.stop(grace=0.1)

    assert leader.stop_overruns == [] and standby.stop_overruns == []
    for outcome in await asyncio.gather(*claims, return_exceptions=True):
        # each claim is committed, refused (the standby's fence came first) or was still waiting
        # when the journal closed: none hangs
        assert isinstance(outcome, tuple | jn.StaleFencingToken | jn.JournalClosed), outcome

"""Issue 15's gateway fixes (v3) and issue 21's Deriv side, over real sockets.

gRPC -> gateway -> WebSocket -> Deriv simulator; the journal on SQLite (one file per test).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from tests.deriv_gateway.test_gateway import transfer

pytestmark = pytest.mark.integration


async def _until(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _rule(sim: Any, rule_id: str) -> Any:
    return next(r for r in sim.sim.faults.rules if r.id == rule_id)


# --- 3. a RateLimit answer to the keep-alive ping -------------------------------------------------


async def test_a_rate_limited_ping_does_not_drop_a_live_socket(sim, start_gateway):
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

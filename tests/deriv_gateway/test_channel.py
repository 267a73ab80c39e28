"""A client given the leader and its standby reaches whichever one leads, across a failover."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest

from deriv_gateway.channel import gateway_channel
from deriv_gateway.lease import RedisLease
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc

from .test_gateway import transfer

pytestmark = pytest.mark.integration


async def test_calls_go_to_the_leader_and_follow_it_when_it_is_deposed(
    sim, start_gateway, redis_url, key_prefix, redis_client
):
    key = f"{key_prefix}lease"
    lease_a = RedisLease(redis_url, key, ttl=1.0, retry=0.1)
    a = await start_gateway(lease=lease_a)
    b = await start_gateway(wait=False, lease=RedisLease(redis_url, key, ttl=1.0, retry=0.1))
    await asyncio.sleep(0.3)
    assert a.server.lease.is_leader and not b.server.lease.is_leader

    # The standby listed first: round robin over the SERVING instance only still picks the leader.
    async with gateway_channel(f"{b.server.address},{a.server.address}") as channel:
        stub = pb_grpc.DerivGatewayServiceStub(channel)
        for _ in range(5):
            tid = str(uuid.uuid4())
            await stub.Transfer(transfer(tid), wait_for_ready=True, timeout=10)
            assert await sim.executed(f"PenPay {tid}") == 1

        lease_a.kill_renewer()  # A hangs; B takes the lease
        await b.server.wait_serving(5)
        deadline = time.monotonic() + 10
        tid = str(uuid.uuid4())
        while True:
            try:
                await stub.Transfer(transfer(tid), timeout=5)
                break
            except grpc.aio.AioRpcError as exc:  # until the health watch sees the switch
                assert exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, exc
                await asyncio.sleep(0.05)
        assert await sim.executed(f"PenPay {tid}") == 1
        row = await b.server.journal.get(tid)
        assert row is not None and row.fencing_token == b.server.lease.token


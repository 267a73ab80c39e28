"""A client given the leader and its standby reaches whichever one leads, across a failover."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from redis.asyncio import Redis

from deriv_gateway.channel import address_list_target, gateway_channel
from deriv_gateway.lease import RedisLease
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc
from tests.deriv_gateway.conftest import Sim, StartGateway

from .test_gateway import transfer

pytestmark = pytest.mark.integration


async def test_calls_go_to_the_leader_and_follow_it_when_it_is_deposed(
    sim: Sim, start_gateway: StartGateway, redis_url: str, key_prefix: str, redis_client: Redis
) -> None:
    key = f"{key_prefix}lease"
    lease_a = RedisLease(redis_url, key, ttl=1.0, retry=0.1)
    a = await start_gateway(lease=lease_a)
    b = await start_gateway(wait=False, lease=RedisLease(redis_url, key, ttl=1.0, retry=0.1))
    await asyncio.sleep(0.3)
    assert a.server.lease.is_leader and not b.server.lease.is_leader

    # The standby listed first: round robin over the SERVING instance only still picks the leader.
    # By name, as compose lists them ("gateway:50052,gateway-standby:50053").
    addresses = (b.server.address, a.server.address)
    by_name = ",".join(addr.replace("127.0.0.1:", "localhost:") for addr in addresses)
    assert by_name.count("localhost:") == 2
    async with gateway_channel(by_name) as channel:
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


def test_an_address_list_resolves_names_and_keeps_literals() -> None:
    target = address_list_target(["localhost:50052", "127.0.0.2:50053"])
    assert target == "ipv4:127.0.0.1:50052,127.0.0.2:50053"
    assert address_list_target(["[::1]:1", "::1:2"]) == "ipv6:[::1]:1,[::1]:2"
    with pytest.raises(ValueError, match="mix"):
        address_list_target(["127.0.0.1:1", "[::1]:2"])

"""The Deriv side of the fuzz tests: a gateway client, the simulator's books, the frames that left."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select

from deriv_gateway import journal as jn
from deriv_gateway.server import SERVICE_NAME, GatewayServer
from deriv_gateway.simulator import DEFAULT_CLIENTS
from penpay.common.v1 import money_pb2
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc
from persistence.tables import deriv_gateway_operations
from tests.deriv_gateway.conftest import FrameLog, Sim

CLIENT = "CR90000001"
TOKEN = DEFAULT_CLIENTS[CLIENT]
FAKE_CODE = "abcdEFGH1234"  # the format of a verification code, issued to nobody
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
MONEY_CALLS = ("paymentagent_transfer", "paymentagent_withdraw")


@dataclass
class Gateway:
    server: GatewayServer
    channel: grpc.aio.Channel
    stub: pb_grpc.DerivGatewayServiceStub
    tokens_seen: set[str] = field(default_factory=set)

    async def call(self, method: str, request: Any) -> grpc.StatusCode:
        try:
            await getattr(self.stub, method)(request, timeout=20)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    async def journal_rows(self) -> list[Any]:
        ops = deriv_gateway_operations
        async with self.server.journal.engine.connect() as conn:
            query = select(ops.c.operation_id, ops.c.status).where(ops.c.operation_id != jn.FENCE_ID)
            return list((await conn.execute(query)).all())


async def still_serving(gateway: Gateway, sim: Sim) -> None:
    health = health_pb2_grpc.HealthStub(gateway.channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    tid = str(uuid.uuid4())
    done = await gateway.stub.Transfer(
        pb.TransferRequest(transfer_id=tid, client_loginid=CLIENT, amount=usd(1250))
    )
    assert done.deriv_transaction_id > 0
    assert await sim.executed(f"PenPay {tid}") == 1


def usd(cents: int, currency: str = "USD") -> money_pb2.Money:
    return money_pb2.Money(amount_cents=cents, currency=currency)


async def books(sim: Sim) -> tuple[Any, Any]:
    """The simulator's money: every balance, the transfers it executed and its ledger."""
    return await sim.get("/books/summary"), await sim.get("/accounts")


def money_frames(frames: FrameLog) -> list[dict[str, Any]]:
    return [f for call in MONEY_CALLS for f in frames.sent(call)]

"""Reconciliation's reads of Deriv through the gateway: the agent's statement by range (ListStatement,
every page) and its balance. Read-only: never a money frame."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from application.reconciliation.ports import DERIV_FLOAT, DERIV_STATEMENT, ProviderReadFailed, ProviderRecord
from application.reconciliation.rules import Amount
from application.reconciliation.service import transaction_hint
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc

PAGE = 200


class GatewayDerivReads:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 30.0) -> None:
        self._stub = pb_grpc.DerivGatewayServiceStub(channel)
        self._timeout = timeout

    async def statement(self, start: datetime, end: datetime) -> list[ProviderRecord]:
        records: list[ProviderRecord] = []
        offset = 0
        while True:
            request = pb.ListStatementRequest(
                date_from_unix=max(1, int(start.timestamp())),
                date_to_unix=int(end.timestamp()),
                offset=offset,
                limit=PAGE,
            )
            try:
                reply = await self._stub.ListStatement(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as error:
                raise ProviderReadFailed(DERIV_STATEMENT, f"{error.code().name}: {error.details()}") from None
            for e in reply.entries:
                records.append(
                    ProviderRecord(
                        ref=str(e.deriv_transaction_id),
                        amount=Amount(e.amount.amount_cents, e.amount.currency),
                        credit=e.credit,
                        occurred_at=datetime.fromtimestamp(e.transaction_time, UTC),
                        reference=e.longcode,
                        transaction_hint=transaction_hint(e.longcode),
                    )
                )
            offset += len(reply.entries)
            if not reply.more or not reply.entries:
                return records

    async def balance(self) -> Amount:
        try:
            reply = await self._stub.GetBalance(pb.GetBalanceRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise ProviderReadFailed(DERIV_FLOAT, f"{error.code().name}: {error.details()}") from None
        return Amount(reply.balance.amount_cents, reply.balance.currency)

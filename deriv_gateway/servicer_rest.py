"""DerivGatewayService with the transport seam: `api: DERIV_API_REST` requests go to the REST
transport, every other request to the v3 path unchanged (old callers never set `api`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from deriv_gateway.request_rules import InvalidRequest
from deriv_gateway.server import DerivGatewayServicer, _call, _money, transfer_response, withdraw_response
from deriv_gateway.service import DerivGateway
from deriv_gateway.statement_rest import rest_statement_page
from deriv_gateway.transport_rest import RestTransport
from penpay.deriv.v1 import deriv_gateway_pb2 as pb

REST = pb.DERIV_API_REST


class SeamServicer(DerivGatewayServicer):
    def __init__(self, gateway: DerivGateway, rest: RestTransport | None) -> None:
        super().__init__(gateway)
        self.rest = rest

    def _rest(self) -> RestTransport:
        if self.rest is None:
            raise InvalidRequest("api", "this gateway has no REST transport configured")
        return self.rest

    async def Transfer(
        self, request: pb.TransferRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransferResponse:
        if request.api != REST:
            return await super().Transfer(request, context)
        result = await _call(
            context,
            "Transfer",
            lambda: self._rest().transfer(
                request.transfer_id,
                request.client_nickname,
                request.amount.amount_cents,
                request.amount.currency,
                resolve_only=request.resolve_only,
            ),
        )
        return transfer_response(result)

    async def Withdraw(
        self, request: pb.WithdrawRequest, context: grpc.aio.ServicerContext
    ) -> pb.WithdrawResponse:
        if request.api != REST:
            return await super().Withdraw(request, context)
        result = await _call(
            context,
            "Withdraw",
            lambda: self._rest().withdraw(
                request.withdrawal_id,
                request.client_token,
                request.client_nickname,
                request.verification_code,
                request.amount.amount_cents,
                request.amount.currency,
                resolve_only=request.resolve_only,
            ),
        )
        return withdraw_response(result)

    async def RequestWithdrawalCode(
        self, request: pb.RequestWithdrawalCodeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestWithdrawalCodeResponse:
        if request.api != REST:
            return await super().RequestWithdrawalCode(request, context)

        async def work() -> None:
            if not request.HasField("amount"):
                raise InvalidRequest("amount", "required with DERIV_API_REST (the code is bound to it)")
            await self._rest().request_withdrawal_code(
                request.client_token, request.amount.amount_cents, request.amount.currency
            )

        await _call(context, "RequestWithdrawalCode", work)
        return pb.RequestWithdrawalCodeResponse()

    async def GetBalance(
        self, request: pb.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBalanceResponse:
        if request.api != REST:
            return await super().GetBalance(request, context)
        balance = await _call(context, "GetBalance", lambda: self._rest().balance())
        return pb.GetBalanceResponse(loginid=balance.loginid, balance=_money(balance.cents, balance.currency))

    async def WatchBalance(
        self, request: pb.WatchBalanceRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchBalanceResponse]:
        if request.api != REST:
            async for item in super().WatchBalance(request, context):
                yield item
            return
        rest = await _call(context, "WatchBalance", self._watchable)
        async for balance in rest.watch_balance():
            yield pb.WatchBalanceResponse(
                loginid=balance.loginid, balance=_money(balance.cents, balance.currency)
            )

    async def ListStatement(
        self, request: pb.ListStatementRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListStatementResponse:
        if request.api != REST:
            return await super().ListStatement(request, context)
        if request.date_from_unix < 0 or request.date_to_unix < request.date_from_unix:
            await _call(context, "ListStatement", _bad_range)
        lines, token = await _call(
            context,
            "ListStatement",
            lambda: rest_statement_page(
                self._rest(),
                date_from=request.date_from_unix,
                date_to=request.date_to_unix,
                page_token=request.page_token,
                limit=request.limit,
            ),
        )
        return pb.ListStatementResponse(
            entries=[
                pb.StatementEntry(
                    deriv_transaction_id=line.transaction_id or 0,
                    action_type=line.category,
                    amount=_money(line.amount_minor, line.currency),
                    credit=line.credit,
                    from_loginid=line.counterparty if line.credit else "",
                    to_loginid="" if line.credit else line.counterparty,
                    longcode=f"{line.channel} {line.request_id}".strip()[:500],
                    transaction_time=line.time,
                    request_id=line.request_id[:128],
                    status=line.status[:32],
                )
                for line in lines
            ],
            more=bool(token),
            next_page_token=token,
        )

    async def _watchable(self) -> RestTransport:
        rest = self._rest()
        self.gateway.term.token()
        return rest

    async def Authorize(
        self, request: pb.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> pb.AuthorizeResponse:
        if request.api != REST:
            return await super().Authorize(request, context)
        nickname, currency = await _call(
            context, "Authorize", lambda: self._rest().authorize(request.client_token)
        )
        return pb.AuthorizeResponse(nickname=nickname, currency=currency)


async def _bad_range() -> None:
    raise InvalidRequest("date_to_unix", "the range must not end before it starts")

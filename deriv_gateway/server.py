"""The gRPC face of the gateway (grpc.aio): DerivGatewayService, health and reflection.

`GatewayServer(config)` is the in-process form (tests, `penpay up`); `penpay gateway` runs one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from deriv_gateway.balance_watch import Balance
from deriv_gateway.config import GatewayConfig
from deriv_gateway.grpc_errors import DETAILS_KEY, to_status
from deriv_gateway.journal import Journal
from deriv_gateway.lease import Lease, LocalLease, RedisLease
from deriv_gateway.logs import get_logger
from deriv_gateway.money_call import MoneyResult
from deriv_gateway.protocol import errors
from deriv_gateway.service import DerivGateway
from domain.shared.clock import Clock
from penpay.common.v1 import money_pb2
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc

log = get_logger("deriv_gateway.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DerivGatewayService"].full_name
T = TypeVar("T")


# How long one step of GatewayServer.stop may take before it is left behind (a container's stop
# grace is 10 s by default: the four steps fit in it unless one of them hangs).
STOP_STEP_LIMIT = 3.0

# How far back FindStatementLine reads at most.
STATEMENT_SEARCH_WINDOW = timedelta(days=30)


async def _call(context: grpc.aio.ServicerContext, rpc: str, work: Callable[[], Awaitable[T]]) -> T:
    try:
        return await work()
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        code, message, details = to_status(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.exception("grpc.internal_error", rpc=rpc)
        else:
            log.info("grpc.error", rpc=rpc, code=code.name, reason=getattr(exc, "code", type(exc).__name__))
        await context.abort(code, message, trailing_metadata=((DETAILS_KEY, details),))
        raise AssertionError("abort returns only by raising") from None


async def _standby() -> None:
    raise errors.NotLeader("this gateway is on standby (it does not hold the lease)")


def _decoding(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The handler, parsing its request itself: bytes that are not the method's message (corrupt wire
    format, invalid UTF-8 in a string) are INVALID_ARGUMENT; grpcio answers UNKNOWN, as if we had failed."""
    parse = handler.request_deserializer

    async def refuse(context: grpc.aio.ServicerContext) -> None:
        log.info("grpc.undecodable_request", rpc=method)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message")

    if handler.unary_unary is not None:
        unary = handler.unary_unary

        async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                request = parse(raw)
            except DecodeError:
                await refuse(context)
            return await unary(request, context)

        return handler._replace(request_deserializer=None, unary_unary=unary_unary)
    stream = handler.unary_stream

    async def unary_stream(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            request = parse(raw)
        except DecodeError:
            await refuse(context)
        async for item in stream(request, context):
            yield item

    return handler._replace(request_deserializer=None, unary_stream=unary_stream)


class _Registrar:
    """Stands in for the server while generated code registers a service, so that each method
    handler can be wrapped before the real server gets it (a server interceptor cost ~15% of a bare
    echo call, measured here), and so that the server gets them as generic handlers only.

    Why not as registered methods too, as the generated code does: grpc.aio serves each registered
    method by a request loop of its own, and its main loop then waits (asyncio.wait, FIRST_COMPLETED)
    on one task per registered method for every RPC it accepts: 13 tasks here (this service, health,
    reflection), a tenth of the gateway's CPU per Transfer (bench/README.md). Generic handlers are
    one dictionary look-up per call.
    """

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers arrive by name in add_registered_method_handlers

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.service, self.handlers = service, handlers


def _add_generic(
    server: grpc.aio.Server,
    add_to_server: Callable[[Any, Any], None],
    servicer: Any,
    wrap: Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler] | None = None,
) -> None:
    """`add_to_server(servicer, server)` of generated code, its handlers as generic handlers only."""
    registrar = _Registrar()
    add_to_server(servicer, registrar)
    if not registrar.handlers:
        raise RuntimeError(f"the generated code registered no methods for {type(servicer).__name__}")
    handlers = {
        name: wrap(name, handler) if wrap is not None else handler
        for name, handler in registrar.handlers.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(registrar.service, handlers),))


def add_gateway_service(servicer: DerivGatewayServicer, server: grpc.aio.Server) -> None:
    _add_generic(server, pb_grpc.add_DerivGatewayServiceServicer_to_server, servicer, _decoding)


def _money(cents: int, currency: str) -> money_pb2.Money:
    return money_pb2.Money(amount_cents=cents, currency=currency)


def transfer_response(result: MoneyResult) -> pb.TransferResponse:
    """A Transfer's answer, whichever transport moved the money (v3 or REST)."""
    return pb.TransferResponse(
        transfer_id=result.operation_id,
        deriv_transaction_id=result.deriv_transaction_id,
        client_loginid=result.client_loginid,
        client_full_name=result.counterparty_name,
        amount=_money(result.amount_cents, result.currency),
        replayed=result.replayed,
        resolved_from_statement=result.resolved_from_statement,
    )


def withdraw_response(result: MoneyResult) -> pb.WithdrawResponse:
    """A Withdraw's answer, whichever transport moved the money (v3 or REST)."""
    return pb.WithdrawResponse(
        withdrawal_id=result.operation_id,
        deriv_transaction_id=result.deriv_transaction_id,
        client_loginid=result.client_loginid,
        payment_agent_name=result.counterparty_name,
        amount=_money(result.amount_cents, result.currency),
        replayed=result.replayed,
        resolved_from_statement=result.resolved_from_statement,
    )


def _str(value: Any) -> str:
    return "" if value is None else str(value)


class DerivGatewayServicer(pb_grpc.DerivGatewayServiceServicer):
    def __init__(self, gateway: DerivGateway) -> None:
        self.gateway = gateway

    async def Transfer(
        self, request: pb.TransferRequest, context: grpc.aio.ServicerContext
    ) -> pb.TransferResponse:
        result: MoneyResult = await _call(
            context,
            "Transfer",
            lambda: self.gateway.transfer(
                request.transfer_id,
                request.client_loginid,
                request.amount.amount_cents,
                request.amount.currency,
                resolve_only=request.resolve_only,
            ),
        )
        return transfer_response(result)

    async def Withdraw(
        self, request: pb.WithdrawRequest, context: grpc.aio.ServicerContext
    ) -> pb.WithdrawResponse:
        result: MoneyResult = await _call(
            context,
            "Withdraw",
            lambda: self.gateway.withdraw(
                request.withdrawal_id,
                request.client_token,
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
        amount = request.amount if request.HasField("amount") else None
        loginid = await _call(
            context,
            "RequestWithdrawalCode",
            lambda: self.gateway.request_withdrawal_code(
                request.client_token,
                amount.amount_cents if amount else None,
                amount.currency if amount else None,
            ),
        )
        return pb.RequestWithdrawalCodeResponse(client_loginid=loginid)

    async def GetBalance(
        self, request: pb.GetBalanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBalanceResponse:
        balance: Balance = await _call(context, "GetBalance", self.gateway.get_balance)
        return pb.GetBalanceResponse(loginid=balance.loginid, balance=_money(balance.cents, balance.currency))

    async def WatchBalance(
        self, request: pb.WatchBalanceRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchBalanceResponse]:
        if not self.gateway.is_leader:
            await _call(context, "WatchBalance", _standby)
        async for balance in self.gateway.watch_balance():
            yield pb.WatchBalanceResponse(
                loginid=balance.loginid, balance=_money(balance.cents, balance.currency)
            )

    async def ListStatement(
        self, request: pb.ListStatementRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListStatementResponse:
        now = int(self.gateway.clock.now().timestamp())
        oldest = now - int(STATEMENT_SEARCH_WINDOW.total_seconds())
        date_from = max(request.date_from_unix, oldest) if request.date_from_unix > 0 else oldest
        date_to = min(request.date_to_unix, now) if request.date_to_unix > 0 else now
        lines, more = await _call(
            context,
            "ListStatement",
            lambda: self.gateway.list_statement(date_from, date_to, request.offset, request.limit),
        )
        currency = str(self.gateway.agent.authorization.get("currency") or "")
        return pb.ListStatementResponse(
            entries=[
                pb.StatementEntry(
                    deriv_transaction_id=line.transaction_id,
                    action_type=line.action_type,
                    amount=_money(abs(line.amount_cents), currency),
                    credit=line.amount_cents > 0,
                    from_loginid=line.from_loginid,
                    to_loginid=line.to_loginid,
                    longcode=line.longcode[:500],
                    transaction_time=line.transaction_time,
                    balance_after=_money(line.balance_after_cents, currency),
                )
                for line in lines
            ],
            more=more,
        )

    async def FindStatementLine(
        self, request: pb.FindStatementLineRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindStatementLineResponse:
        now = self.gateway.clock.now()
        oldest = now - STATEMENT_SEARCH_WINDOW
        since = oldest
        if request.since_unix > 0:
            asked = datetime.fromtimestamp(min(request.since_unix, int(now.timestamp())), UTC)
            since = max(asked, oldest)
        found = await _call(
            context,
            "FindStatementLine",
            lambda: self.gateway.find_statement_line(request.reference, since),
        )
        if found is None:
            return pb.FindStatementLineResponse(found=False)
        currency = str(self.gateway.agent.authorization.get("currency") or "")
        return pb.FindStatementLineResponse(
            found=True,
            deriv_transaction_id=found.transaction_id,
            amount=_money(found.amount_cents, currency),
            from_loginid=found.from_loginid or "",
            to_loginid=found.to_loginid or "",
            longcode=found.longcode[:500],
            transaction_time=found.transaction_time or 0,
        )

        self.gateway.term.token()

    async def GetSettings(
        self, request: pb.GetSettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetSettingsResponse:
        loginid, s = await _call(
            context, "GetSettings", lambda: self.gateway.get_settings(request.client_token)
        )
        dob = s.get("date_of_birth")
        return pb.GetSettingsResponse(
            client_loginid=loginid,
            email=_str(s.get("email")),
            first_name=_str(s.get("first_name")),
            last_name=_str(s.get("last_name")),
            date_of_birth=int(dob) if isinstance(dob, int | float) else 0,
            phone=_str(s.get("phone")),
            country_code=_str(s.get("country_code")),
            residence=_str(s.get("residence")),
            citizen=_str(s.get("citizen")),
            place_of_birth=_str(s.get("place_of_birth")),
            address_line_1=_str(s.get("address_line_1")),
            address_line_2=_str(s.get("address_line_2")),
            address_city=_str(s.get("address_city")),
            address_state=_str(s.get("address_state")),
            address_postcode=_str(s.get("address_postcode")),
            tax_residence=_str(s.get("tax_residence")),
            is_authenticated_payment_agent=bool(s.get("is_authenticated_payment_agent")),
        )

    async def Authorize(
        self, request: pb.AuthorizeRequest, context: grpc.aio.ServicerContext
    ) -> pb.AuthorizeResponse:
        a = await _call(context, "Authorize", lambda: self.gateway.authorize(request.client_token))
        return pb.AuthorizeResponse(
            loginid=_str(a.get("loginid")),
            currency=_str(a.get("currency")),
            scopes=[str(s) for s in a.get("scopes") or []],
            is_virtual=bool(a.get("is_virtual")),
            fullname=_str(a.get("fullname")),
            email=_str(a.get("email")),
            country=_str(a.get("country")),
            landing_company_name=_str(a.get("landing_company_name")),
        )


@dataclass(frozen=True)
class StopOverrun:
    """A step of GatewayServer.stop that did not end within its limit, left running."""

    step: str
    waiting_at: str
    task: asyncio.Future[object]


def _waiting_at(task: asyncio.Future[object]) -> str:
    """The innermost coroutine a task is suspended in, as path:line function (a stop's diagnosis)."""
    if not isinstance(task, asyncio.Task):
        return "unknown"
    coro: Any = task.get_coro()
    while getattr(coro, "cr_await", None) is not None and hasattr(coro.cr_await, "cr_frame"):
        coro = coro.cr_await  # down the chain of awaited coroutines to the one awaiting a future
    frame = getattr(coro, "cr_frame", None)
    if frame is None:
        return "unknown"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"


def make_lease(config: GatewayConfig) -> Lease:
    if not config.redis_url:
        return LocalLease()
    return RedisLease(config.redis_url, config.lease_key, ttl=config.lease_ttl, retry=config.lease_retry)


def _rest_transport(config: GatewayConfig, gateway: DerivGateway) -> Any:
    """The REST transport when configured (imported late: it builds on this module's servicer)."""
    if not config.rest_base_url:
        return None
    from deriv_gateway.rest import DerivRestClient
    from deriv_gateway.transport_rest import RestTransport

    client = DerivRestClient(
        config.rest_base_url,
        config.rest_app_id,
        per_minute=config.rest_per_minute,
        request_timeout=config.request_timeout,
        poll_interval=config.rest_poll_interval,
        # a pending transfer is followed for at most one request timeout: the RPC then answers
        # "unknown" and the row, still SENDING, is looked up again on the next call or sweep
        follow_for=config.request_timeout,
    )
    return RestTransport(gateway, client, config.rest_agent_token)


class GatewayServer:
    """gRPC server + gateway + journal + lease, started and stopped together."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        journal: Journal | None = None,
        lease: Lease | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`clock`: the gateway's time (journal timestamps and every window measured from them); the
        system clock unless given (or the given journal's)."""
        self.config = config
        self.journal = journal or Journal.from_url(config.database_url, clock=clock)
        self.lease = lease or make_lease(config)
        self.gateway = DerivGateway(config, self.journal, self.lease, clock=clock)
        self.rest = _rest_transport(config, self.gateway)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None
        self._health_task: asyncio.Task[None] | None = None
        # the steps of stop() that overran their limit (tests; each is logged)
        self.stop_overruns: list[StopOverrun] = []

    @property
    def address(self) -> str:
        host = self.config.grpc_addr.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        from deriv_gateway.servicer_rest import SeamServicer

        add_gateway_service(SeamServicer(self.gateway, self.rest), server)  # first: looked up first
        _add_generic(server, health_pb2_grpc.add_HealthServicer_to_server, self.health)
        # what reflection.enable_server_reflection does for a grpc.aio server, generic only
        _add_generic(
            server,
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server,
            reflection.aio.ReflectionServicer((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)),
        )
        self.port = server.add_insecure_port(self.config.grpc_addr)
        if not self.port:
            raise RuntimeError(f"cannot bind {self.config.grpc_addr}")
        await self._set_health(False)
        await server.start()
        self._server = server
        self.lease.on_change(lambda leader, _token: self._set_health(leader))
        if self.rest is not None:
            self.rest.start()
        await self.gateway.start()
        log.info("gateway.started", addr=self.address, redis=bool(self.config.redis_url))

    async def _set_health(self, leader: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if leader else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        result = self.health.set(SERVICE_NAME, status)
        if asyncio.iscoroutine(result):
            await result
        result = self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        if asyncio.iscoroutine(result):
            await result

    async def stop(self, grace: float = 1.0, step_limit: float = STOP_STEP_LIMIT) -> None:
        """Release the lease first (a standby may take over at once), then close the rest.

        Each step gets at most `step_limit` seconds: one that overruns is logged with where it
        waits and left behind, so a stop always ends (the process exits after it; the journal's
        fence keeps a left-behind step from writing once another gateway leads).
        """
        await self._bounded("gateway", self.gateway.stop, step_limit)
        if self.rest is not None:
            await self._bounded("rest", self.rest.close, step_limit)
        if self._server is not None:
            server, self._server = self._server, None
            await self._bounded("grpc", lambda: server.stop(grace), step_limit + grace)
        await self._bounded("journal", self.journal.close, step_limit)
        log.info("gateway.stopped", overran=[o.step for o in self.stop_overruns] or None)

    async def _bounded(self, step: str, work: Callable[[], Awaitable[object]], limit: float) -> None:
        task = asyncio.ensure_future(work())
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:
            overrun = StopOverrun(step, _waiting_at(task), task)
            self.stop_overruns.append(overrun)
            log.error("gateway.stop_step_overran", step=step, limit=limit, waiting_at=overrun.waiting_at)
        elif not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("gateway.stop_step_failed", step=step, error=type(exc).__name__)

    async def wait_serving(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until this instance is leader and its agent connection is authorized."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.gateway.serving:
            if loop.time() > deadline:
                raise TimeoutError("gateway not serving")
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> GatewayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.wait_for_termination()

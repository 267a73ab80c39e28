"""The gRPC server of the public API: services, interceptors, health per service, reflection.

`ApiServer(services, ...)` is the in-process form (tests, `penpay up`); `penpay api` runs one.
Interceptors, outermost first: observability (logs + metrics), error mapping, authentication,
authorisation, idempotency (money methods only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from domain.shared.clock import Clock
from penpay_api.auth import AccessPolicy, RoleAwareAccessTokens
from penpay_api.idempotency import IdempotencyInterceptor
from penpay_api.interceptors import (
    AuthenticationInterceptor,
    AuthorisationInterceptor,
    ErrorMappingInterceptor,
    ObservabilityInterceptor,
    RefusalAudit,
)
from penpay_api.metrics import MetricsServer
from penpay_api.sessions import SessionCheck
from security.proxies import TrustedProxies

log = structlog.get_logger("penpay.api")

HEALTH_SERVICE = health.SERVICE_NAME
REFLECTION_SERVICE = reflection.SERVICE_NAME
PUBLIC_SERVICES = (HEALTH_SERVICE, REFLECTION_SERVICE, "grpc.reflection.v1.ServerReflection")


@dataclass
class Service:
    """One servicer and how to add it to a server."""

    name: str  # full service name, e.g. penpay.auth.v1.AuthService
    servicer: Any
    add_to_server: Any  # pb_grpc.add_<Service>Servicer_to_server
    public_methods: Collection[str] = ()
    operator_only: bool = False
    # staff methods (of an operator_only service) -> the roles of which the caller needs one
    method_roles: Mapping[str, Collection[str]] = field(default_factory=dict)
    money_methods: Collection[str] = ()
    # of money_methods, those whose refusals free the key when they created nothing under it
    creates_transaction_under_key: Collection[str] = ()
    # of money_methods, those whose use case checks the session and reads and writes the idempotency
    # record in its own one read and create transaction (penpay_api/idempotency.py)
    answered_by_use_case: Collection[str] = ()
    # of money_methods, those whose use case claims the key with its intent and completes it with its
    # answer (penpay_api/idempotency.py)
    claimed_by_use_case: Collection[str] = ()
    # methods whose use case checks the caller's session in its own one read of the user
    sessions_checked_by_use_case: Collection[str] = ()
    field_aliases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


class ApiServer:
    def __init__(
        self,
        services: Sequence[Service],
        *,
        tokens: RoleAwareAccessTokens,
        idempotency: IdempotencyInterceptor,
        clock: Clock,
        grpc_addr: str,
        metrics_addr: str | None = None,
        trusted_proxies: TrustedProxies | Collection[str] = (),
        extra_handlers: Sequence[grpc.GenericRpcHandler] = (),
        sessions: SessionCheck | None = None,
        refusal_audit: RefusalAudit | None = None,
    ) -> None:
        self.services = list(services)
        self.grpc_addr = grpc_addr
        self.policy = AccessPolicy(
            public_methods=[m for s in services for m in s.public_methods],
            public_services=PUBLIC_SERVICES,
            operator_services=[s.name for s in services if s.operator_only],
            method_roles={m: r for s in services for m, r in s.method_roles.items()},
        )
        self.idempotency = idempotency
        self.idempotency.money_methods.update(m for s in services for m in s.money_methods)
        self.idempotency.creates_transaction_under_key.update(
            m for s in services for m in s.creates_transaction_under_key
        )
        answered = {m for s in services for m in s.answered_by_use_case}
        self.idempotency.answered_by_use_case.update(answered)
        self.idempotency.claimed_by_use_case.update(m for s in services for m in s.claimed_by_use_case)
        aliases: dict[str, Mapping[str, str]] = {}
        for s in services:
            aliases.update(s.field_aliases)
        self.idempotency.field_aliases.update(aliases)
        self.interceptors: list[grpc.aio.ServerInterceptor] = [
            ObservabilityInterceptor(trusted_proxies=trusted_proxies),
            ErrorMappingInterceptor(field_aliases=aliases),
            AuthenticationInterceptor(
                tokens,
                self.policy,
                clock,
                sessions,
                sessions_checked_by_use_case={m for s in services for m in s.sessions_checked_by_use_case},
            ),
            AuthorisationInterceptor(self.policy, refusal_audit),
            idempotency,
        ]
        self.health = health.aio.HealthServicer()
        self.metrics = MetricsServer(metrics_addr) if metrics_addr else None
        self._extra_handlers = list(extra_handlers)
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    @property
    def address(self) -> str:
        host = self.grpc_addr.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server(interceptors=self.interceptors, options=[("grpc.so_reuseport", 0)])
        for service in self.services:
            service.add_to_server(service.servicer, server)
        if self._extra_handlers:
            server.add_generic_rpc_handlers(tuple(self._extra_handlers))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [s.name for s in self.services]
        reflection.enable_server_reflection((*names, HEALTH_SERVICE, REFLECTION_SERVICE), server)
        self.port = server.add_insecure_port(self.grpc_addr)
        if not self.port:
            raise RuntimeError(f"cannot bind {self.grpc_addr}")
        for name in ("", *names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        await server.start()
        self._server = server
        if self.metrics is not None:
            await self.metrics.start()
        log.info(
            "api.started",
            addr=self.address,
            services=names,
            metrics=self.metrics.url if self.metrics else None,
        )

    async def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING first (load balancers stop sending), then finish calls in flight."""
        if self._server is None:
            return
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None
        if self.metrics is not None:
            await self.metrics.stop()
        log.info("api.stopped")

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def __aenter__(self) -> ApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.stop(grace=1.0))

"""Each interceptor wraps a method's handler once and hands the same one to every later call."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from penpay_api.interceptors import ErrorMappingInterceptor, ObservabilityInterceptor

pytestmark = pytest.mark.unit


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata: tuple[tuple[str, str], ...] = ()


async def _echo(request: Any, context: Any) -> Any:
    return request


def test_a_method_is_wrapped_once_and_an_unknown_one_is_looked_up_each_time() -> None:
    looked_up: list[str] = []
    handler = grpc.unary_unary_rpc_method_handler(_echo)

    async def continuation(details: Any) -> grpc.RpcMethodHandler | None:
        looked_up.append(details.method)
        return handler if details.method == "/p.S/M" else None

    async def scenario() -> None:
        outer, inner = ObservabilityInterceptor(), ErrorMappingInterceptor()

        async def chain(details: Any) -> grpc.RpcMethodHandler | None:
            async def next_one(d: Any) -> grpc.RpcMethodHandler | None:
                result: grpc.RpcMethodHandler | None = await inner.intercept_service(continuation, d)
                return result

            result: grpc.RpcMethodHandler | None = await outer.intercept_service(next_one, details)
            return result

        first = await chain(_Details("/p.S/M"))
        again = await chain(_Details("/p.S/M"))
        assert first is not None and first is again and first is not handler
        assert await chain(_Details("/p.S/Unknown")) is None
        assert await chain(_Details("/p.S/Unknown")) is None
        assert looked_up == ["/p.S/M", "/p.S/Unknown", "/p.S/Unknown"]
        # another server's interceptors keep handlers of their own
        other = await ObservabilityInterceptor().intercept_service(continuation, _Details("/p.S/M"))
        assert other is not None and other is not first

    asyncio.run(scenario())

"""Health per service and server reflection, as grpc_health_probe and grpcurl use them."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.api import annotations_pb2
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from .conftest import Harness

pytestmark = pytest.mark.integration

SERVICES = {
    "penpay.auth.v1.AuthService",
    "penpay.payments.v1.PaymentsService",
    "penpay.wallet.v1.WalletService",
    "penpay.ops.v1.OpsService",
    "penpay.dev.v1.DevService",
}


async def test_health_answers_serving_for_each_service(api: Harness) -> None:
    stub = health_pb2_grpc.HealthStub(api.channel)
    for name in ("", *sorted(SERVICES)):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.Check(health_pb2.HealthCheckRequest(service="penpay.nope.v1.NopeService"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_goes_not_serving_when_the_server_stops(api: Harness) -> None:
    stub = health_pb2_grpc.HealthStub(api.channel)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service="penpay.auth.v1.AuthService"))
    first = await watch.read()
    assert first.status == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.create_task(api.api.server.stop(grace=2.0))
    second = await asyncio.wait_for(watch.read(), 5)
    assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
    await stopping


async def test_reflection_lists_the_services(api: Harness) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(api.channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    reply = await call.read()
    await call.done_writing()
    names = {s.name for s in reply.list_services_response.service}
    assert SERVICES <= names
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names


def _describe(address: str, symbol: str) -> tuple[list[str], dict[str, str], list[str]]:
    """What `grpcurl describe <symbol>` does: fetch the file over reflection, load it in a pool."""
    with grpc.insecure_channel(address) as channel:
        pool = DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        service = pool.FindServiceByName(symbol)
        http = {}
        for method in service.methods:
            options = method.GetOptions()
            if options.HasExtension(annotations_pb2.http):
                rule = options.Extensions[annotations_pb2.http]
                verb = rule.WhichOneof("pattern") or ""
                http[method.name] = f"{verb.upper()} {getattr(rule, verb)}" if verb else ""
        login_fields = [f.name for f in pool.FindMessageTypeByName("penpay.auth.v1.LoginRequest").fields]
        return [m.name for m in service.methods], http, login_fields


async def test_reflection_describes_a_service_with_its_http_rules(api: Harness) -> None:
    methods, http, login_fields = await asyncio.to_thread(
        _describe, api.address, "penpay.auth.v1.AuthService"
    )
    assert {
        "Register",
        "Login",
        "Refresh",
        "Logout",
        "ListDevices",
        "RemoveDevice",
        "BindDerivAccount",
    } <= set(methods)
    assert {"VerifyPhone", "VerifyEmail", "RequestPhoneVerification", "RequestEmailVerification"} <= set(
        methods
    )
    assert login_fields == ["login", "password", "device_id", "device_name"]
    assert set(http) == set(methods), "every RPC has a google.api.http rule"
    assert http["Login"] == "POST /v1/sessions" and http["RemoveDevice"] == "DELETE /v1/devices/{device_id}"

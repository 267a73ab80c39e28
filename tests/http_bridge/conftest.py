"""HTTP bridge harness: a test proto compiled for the session, its servicer as a real grpc.aio server on
127.0.0.1:0, and the bridge as a real aiohttp server on 127.0.0.1:0 in front of it. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.cookies import Morsel, SimpleCookie
from importlib import resources
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from penpay_api.http import BridgeConfig, CookiePolicy, build_app, start_server

PROTOS = Path(__file__).parent / "protos"
SERVICE = "penpay.testing.v1.EchoService"
LOGIN = f"{SERVICE}/Login"
REFRESH = f"{SERVICE}/Refresh"
LOGOUT = f"{SERVICE}/Logout"
ACCESS_TOKEN = "access-token-0123456789abcdef"
REFRESH_TOKEN = "refresh-token-0123456789abcdef"
NEW_ACCESS_TOKEN = "access-token-rotated-fedcba9876543210"
NEW_REFRESH_TOKEN = "refresh-token-rotated-fedcba9876543210"
PASSWORD = "correct horse battery staple"
CODES = {code.value[0]: code for code in grpc.StatusCode}

TEST_POLICY = CookiePolicy(
    session_rpcs=frozenset({LOGIN, REFRESH}),
    refresh_token_rpcs=frozenset({REFRESH, LOGOUT}),
    logout_rpcs=frozenset({LOGOUT}),
)


def _compile(out: Path) -> None:
    import google.api  # type: ignore[import-untyped]  # googleapis-common-protos ships no py.typed
    from grpc_tools import protoc  # type: ignore[import-untyped]  # grpcio-tools ships no py.typed

    deps = out / "deps" / "google" / "api"
    deps.mkdir(parents=True)
    source = Path(google.api.__path__[0])
    for name in ("annotations.proto", "http.proto", "field_behavior.proto"):
        shutil.copyfile(source / name, deps / name)
    well_known = str(resources.files("grpc_tools") / "_proto")
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{out / 'deps'}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "penpay_testing_echo.proto",
        ]
    )
    assert code == 0, "protoc failed on tests/http_bridge/protos/penpay_testing_echo.proto"


@pytest.fixture(scope="session")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The compiled test proto: `echo.pb` (messages) and `echo.grpc` (stubs, servicer base)."""
    import importlib

    if "penpay_testing_echo_pb2" not in sys.modules:
        out = tmp_path_factory.mktemp("echo_proto")
        _compile(out)
        sys.path.insert(0, str(out))
    pb: ModuleType = importlib.import_module("penpay_testing_echo_pb2")
    pb_grpc: ModuleType = importlib.import_module("penpay_testing_echo_pb2_grpc")
    yield SimpleNamespace(pb=pb, grpc=pb_grpc)


@dataclass
class Call:
    method: str
    request: Any
    metadata: dict[str, str | bytes]


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)
    streamed: int = 0  # items WatchItems yielded
    stream_ended: asyncio.Event = field(default_factory=asyncio.Event)

    def names(self) -> list[str]:
        return [c.method for c in self.calls]

    def last(self, method: str) -> Call:
        found = [c for c in self.calls if c.method == method]
        assert found, f"{method} never reached the backend (calls: {self.names()})"
        return found[-1]


def make_servicer(echo: SimpleNamespace, recorder: Recorder) -> Any:
    pb = echo.pb

    class EchoServicer(echo.grpc.EchoServiceServicer):  # type: ignore[misc,name-defined]
        def _record(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
            metadata = {k: v for k, v in (context.invocation_metadata() or ())}
            recorder.calls.append(Call(method, request, metadata))

        async def GetItem(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record("GetItem", request, context)
            item = pb.Item(
                item_id=request.item_id,
                title="a title",
                shelf=request.shelf,
                count=request.count,
                tags=list(request.tags),
                kind=request.kind,
                active=request.active,
                price=request.price,
            )
            item.filter.CopyFrom(request.filter)
            if request.HasField("created_at"):
                item.created_at.CopyFrom(request.created_at)
            if request.HasField("limit"):
                item.limit.CopyFrom(request.limit)
            return item

        async def CreateItem(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record("CreateItem", request, context)
            await context.send_initial_metadata((("x-http-code", "201"), ("x-item-version", "7")))
            return pb.Item(
                item_id="item-1",
                title=request.title,
                count=request.count,
                tags=list(request.tags),
                kind=request.kind,
                attributes=dict(request.attributes),
                big=2**63 + 5,
            )

        async def AnnotateItem(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record("AnnotateItem", request, context)
            return pb.Item(
                item_id=request.item_id,
                note=f"{request.note.author}: {request.note.text}",
                active=request.pin,
            )

        async def UpdateItem(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record("UpdateItem", request, context)
            item = pb.Item()
            item.CopyFrom(request.item)
            item.note = request.update_mask
            return item

        async def DeleteItem(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record("DeleteItem", request, context)
            return pb.DeleteItemResponse()

        async def GetFile(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record("GetFile", request, context)
            return pb.GetFileResponse(file=pb.File(name=request.name, size=len(request.name)), etag="e1")

        async def WatchItems(self, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            self._record("WatchItems", request, context)
            if request.delay > 0:
                await context.send_initial_metadata((("x-stream", "open"),))
                await asyncio.sleep(request.delay)
            try:
                for index in range(request.count):
                    yield pb.Item(item_id=f"item-{index}", count=index, title=f"t{index}")
                    recorder.streamed += 1
                if request.fail_with:
                    await context.abort(CODES[request.fail_with], "the stream broke")
            finally:
                recorder.stream_ended.set()

        async def Fail(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record("Fail", request, context)
            if request.code == 0:
                return pb.FailResponse(outcome="ok")
            code = CODES[request.code]
            message = request.message or f"failed with {code.name}"
            status = status_pb2.Status(code=request.code, message=message)
            bad_request = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field="amount", description="too small")
                ]
            )
            info = error_details_pb2.ErrorInfo(
                reason="AMOUNT_TOO_SMALL", domain="penpay.test", metadata={"min": "10"}
            )
            for detail in (bad_request, info):
                packed = any_pb2.Any()
                packed.Pack(detail)
                status.details.append(packed)
            await context.abort(
                code, message, trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),)
            )

        async def Whoami(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record("Whoami", request, context)
            entries = []
            for key, value in context.invocation_metadata() or ():
                text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
                entries.append(pb.MetadataEntry(key=key, value=text))
            return pb.WhoamiResponse(metadata=entries)

        async def Login(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record("Login", request, context)
            if request.password != PASSWORD:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong login or password")
            return pb.LoginResponse(
                user_id="user-1",
                access_token=ACCESS_TOKEN,
                expires_in=900,
                refresh_token=REFRESH_TOKEN,
                refresh_expires_in=86400,
            )

        async def Refresh(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record("Refresh", request, context)
            if request.refresh_token != REFRESH_TOKEN:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "refresh token not valid")
            return pb.LoginResponse(
                user_id="user-1",
                access_token=NEW_ACCESS_TOKEN,
                expires_in=900,
                refresh_token=NEW_REFRESH_TOKEN,
                refresh_expires_in=86400,
            )

        async def Logout(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            self._record("Logout", request, context)
            return pb.LogoutResponse()

    return EchoServicer()


@dataclass
class Backend:
    target: str
    recorder: Recorder


@pytest.fixture
async def backend(echo: SimpleNamespace) -> AsyncIterator[Backend]:
    recorder = Recorder()
    server = grpc.aio.server()
    echo.grpc.add_EchoServiceServicer_to_server(make_servicer(echo, recorder), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield Backend(f"127.0.0.1:{port}", recorder)
    await server.stop(None)


@dataclass
class Bridge:
    http: aiohttp.ClientSession
    recorder: Recorder
    base_url: str


async def _serve_bridge(backend: Backend, config: BridgeConfig) -> AsyncIterator[Bridge]:
    app = build_app([SERVICE], backend.target, config=config)
    runner, port = await start_server(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.DummyCookieJar()) as http:
            yield Bridge(http, backend.recorder, base)
    finally:
        await runner.cleanup()


TEST_CONFIG = BridgeConfig(
    cookie_policy=TEST_POLICY,
    money_rpcs=frozenset({f"{SERVICE}/CreateItem"}),
    public_rpcs=frozenset({LOGIN, REFRESH}),
    sse_heartbeat=0.2,
)


@pytest.fixture
async def bridge(backend: Backend) -> AsyncIterator[Bridge]:
    async for served in _serve_bridge(backend, TEST_CONFIG):
        yield served


@pytest.fixture
def serve_bridge(backend: Backend) -> Any:
    """Start a bridge with another configuration: `async with serve_bridge(config) as bridge:`."""
    import contextlib

    @contextlib.asynccontextmanager
    async def serve(config: BridgeConfig) -> AsyncIterator[Bridge]:
        async for served in _serve_bridge(backend, config):
            yield served

    return serve


def set_cookies(response: aiohttp.ClientResponse) -> dict[str, Morsel[str]]:
    """Every Set-Cookie of a response, parsed (name -> morsel with its attributes)."""
    found: dict[str, Morsel[str]] = {}
    for header in response.headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        found.update(jar)
    return found


def cookie_header(**values: str) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in values.items())}

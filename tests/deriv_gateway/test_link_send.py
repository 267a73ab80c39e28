"""The Link over a real socket whose peer stops reading, then drops: a frame already handed to the
transport is "outcome unknown", never "not sent", and no reply waiter is left orphaned."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from deriv_gateway.connection import Link
from deriv_gateway.protocol import errors

pytestmark = pytest.mark.integration

# far more than the kernel buffers of both ends (the server's receive buffer is made tiny)
FRAME_PADDING = 16 * 1024 * 1024


class StalledServer:
    """A WebSocket server that stops reading from each client and, when told, aborts the TCP connection."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.drop = asyncio.Event()
        self.port = 0

    async def handler(self, ws: ServerConnection) -> None:
        ws.transport.pause_reading()  # the client's writes pile up: backpressure
        self.connected.set()
        await self.drop.wait()
        ws.transport.abort()


@pytest.fixture
async def stalled() -> AsyncIterator[StalledServer]:
    server = StalledServer()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by accepted sockets
    sock.bind(("127.0.0.1", 0))
    server.port = sock.getsockname()[1]
    async with serve(server.handler, sock=sock, max_size=None):
        yield server


class ExceptionsReported:
    """What the loop would log as unhandled ("Future exception was never retrieved", ...)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.contexts: list[dict[str, Any]] = []

    def __enter__(self) -> ExceptionsReported:
        self.previous = self.loop.get_exception_handler()
        self.loop.set_exception_handler(lambda _loop, context: self.contexts.append(context))
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.set_exception_handler(self.previous)

    def never_retrieved(self) -> list[dict[str, Any]]:
        gc.collect()  # an unretrieved future's exception is reported when it is collected
        return [c for c in self.contexts if "never retrieved" in str(c.get("message"))]


async def _stalled_send(stalled: StalledServer) -> tuple[Link, asyncio.Task[Any]]:
    link = await Link.open(f"ws://127.0.0.1:{stalled.port}/", name="test", compression=False, open_timeout=5)
    await stalled.connected.wait()
    request = asyncio.create_task(
        link.request("ping", {"passthrough": {"pad": "x" * FRAME_PADDING}}, timeout=30)
    )
    # the frame is in the transport's buffer and send() waits for it to drain
    while link.ws.transport.get_write_buffer_size() == 0:
        await asyncio.sleep(0.005)
    assert not request.done()
    return link, request


async def test_a_caller_that_stops_waiting_leaves_no_waiter_for_the_disconnect_to_fail(
    stalled: StalledServer,
) -> None:
    with ExceptionsReported(asyncio.get_running_loop()) as reported:
        link, request = await _stalled_send(stalled)
        request.cancel()  # the caller gives up while the frame drains (an RPC deadline, say)
        with pytest.raises(asyncio.CancelledError):
            await request
        stalled.drop.set()
        await link.closed.wait()
        await link.close()
        del request
        assert not reported.never_retrieved()


async def test_a_send_failing_after_the_frame_was_handed_over_is_unknown_and_leaves_no_orphan(
    stalled: StalledServer,
) -> None:
    with ExceptionsReported(asyncio.get_running_loop()) as reported:
        link, request = await _stalled_send(stalled)
        stalled.drop.set()
        with pytest.raises(errors.DerivError) as raised:
            await request
        # it may have left: never "not sent" (NotConnected would let a money call be sent again)
        assert isinstance(raised.value, errors.OutcomeUnknown), type(raised.value)
        await link.closed.wait()
        await link.close()
        del request, raised
        assert not reported.never_retrieved()


@pytest.mark.parametrize(
    ("ending", "reason"),
    [
        ("policy", "closed by Deriv: 1008 Policy Violation"),  # Deriv's answer to a refused ping
        ("normal", "closed by Deriv: 1000 bye"),
        ("abort", "no close frame (the TCP connection ended)"),  # a proxy or the host gone
    ],
)
async def test_a_link_says_why_its_socket_ended(ending: str, reason: str) -> None:
    """The gateway logs why Deriv's socket ended (deriv.disconnected's `reason`): an operator's first
    question when payments' answers were lost with it."""

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # the client is connected and has spoken
        if ending == "policy":
            await ws.close(1008, "Policy Violation")
        elif ending == "normal":
            await ws.close(1000, "bye")
        else:
            ws.transport.abort()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        link = await Link.open(f"ws://127.0.0.1:{port}/", name="test", compression=False, open_timeout=5)
        assert link.close_reason == "not closed"
        await link.ws.send('{"ping": 1, "req_id": 1}')
        await asyncio.wait_for(link.closed.wait(), 5)
    assert link.close_reason == reason

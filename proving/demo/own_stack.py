"""An embedded stack of the demo's own: `penpay up`'s EmbeddedStack on free loopback ports, SQLite
and the in-process bus in a temporary state directory.

Every part of the embedded stack reads its address from settings, and the parts find each other
through those settings (the bridge dials PENPAY_GRPC_ADDR, the payments dial the gateway, M-Pesa
is told the callback URL), so ports are chosen free up front rather than bound as port 0.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

from penpay.settings import Settings
from proving.cluster import free_port
from proving.demo.journey import Endpoints

# EmbeddedStack puts the Deriv simulator's control API on the WebSocket port + 3 (as `penpay up`: 8765/8768).
DERIV_CONTROL_OFFSET = 3
_ATTEMPTS = 50


def _hold(stack: ExitStack, port: int = 0) -> int | None:
    """Bind and keep `port`; 0: one below the ephemeral range (proving.cluster.free_port says why)."""
    if port == 0:
        port = free_port()
    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return None
    return int(sock.getsockname()[1])


def free_ports(count: int) -> tuple[int, list[int]]:
    """A port p with p + DERIV_CONTROL_OFFSET free too, and `count` other free ports, all distinct.
    All are held open together while choosing, so none is handed out twice."""
    with ExitStack() as held:
        for _ in range(_ATTEMPTS):
            deriv = _hold(held)
            if deriv is not None and _hold(held, deriv + DERIV_CONTROL_OFFSET) is not None:
                break
        else:
            raise RuntimeError("no free port pair for the Deriv simulator on 127.0.0.1")
        others = [_hold(held) for _ in range(count)]
        return deriv, [p for p in others if p is not None]


def own_stack_settings(base: Settings, state_dir: Path) -> Settings:
    from penpay.embedded import embedded_settings

    deriv, (mpesa, callbacks, gateway, grpc_port, http, metrics, sms, rest) = free_ports(8)
    updates = {
        "database_url": f"sqlite+aiosqlite:///{state_dir / 'penpay.db'}",
        "deriv_ws_url": f"ws://127.0.0.1:{deriv}/websockets/v3",
        "mpesa_base_url": f"http://127.0.0.1:{mpesa}",
        "mpesa_callback_base_url": f"http://127.0.0.1:{callbacks}",
        "gateway_addr": f"127.0.0.1:{gateway}",
        "grpc_addr": f"127.0.0.1:{grpc_port}",
        "http_addr": f"127.0.0.1:{http}",
        "metrics_addr": f"127.0.0.1:{metrics}",
        "sms_at_base_url": f"http://127.0.0.1:{sms}",
        "deriv_rest_base_url": f"http://127.0.0.1:{rest}",
    }
    return embedded_settings(base.model_copy(update=updates), state_dir)


def endpoints_of(addresses: dict[str, str]) -> Endpoints:
    """The demo's endpoints from the addresses an EmbeddedStack reports (what `penpay up` prints)."""
    from penpay.embedded import DERIV_REST_SIMULATOR, SMS_SIMULATOR

    return Endpoints(
        sms_url=addresses.get(SMS_SIMULATOR),
        deriv_rest_url=addresses.get(DERIV_REST_SIMULATOR),
        bridge_url=addresses["HTTP/JSON bridge"],
        deriv_control_url=addresses["Deriv simulator control"],
        mpesa_url=addresses["Daraja simulator"],
    )


@asynccontextmanager
async def own_stack(base: Settings, state_dir: Path) -> AsyncIterator[Endpoints]:
    """Start an EmbeddedStack on free ports in `state_dir`; stop it on the way out."""
    from penpay.embedded import EmbeddedStack

    stack = EmbeddedStack(own_stack_settings(base, state_dir), state_dir)
    try:
        await stack.start()
        yield endpoints_of(stack.addresses)
    finally:
        await stack.stop()

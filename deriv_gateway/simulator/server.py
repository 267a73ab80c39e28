"""The I/O layer: the WebSocket server (websockets asyncio API), timing, faults, and the control API.

    sim = DerivSimulator(SimulatorConfig(port=0, control_port=0, seed=7))
    ports = await sim.start()          # BoundPorts(ws=..., control=...)
    url = sim.url(app_id=1089)         # ws://127.0.0.1:PORT/websockets/v3?app_id=1089&l=EN
    ...
    await sim.stop()

or `async with DerivSimulator(config) as sim: ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import foreign
from .clock import Clock
from .config import SimulatorConfig
from .engine import Engine, Push, Session, find_call
from .faults import FaultInjector

log = logging.getLogger("deriv_gateway.simulator")

APP_ID_RE = re.compile(r"^(?!0)[0-9]{1,19}$")
WS_PATH = "/websockets/v3"


@dataclass(frozen=True)
class BoundPorts:
    ws: int
    control: int | None


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        number = float(value)
        return number if math.isfinite(number) else str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def parse_frame(text: str) -> Any:
    """Numbers with a fraction or exponent become Decimal: amounts are never floats."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


class SimConnection(ServerConnection):
    """Counts any inbound bytes (protocol pings too) as activity, like Mojo's stream inactivity timer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_activity = time.monotonic()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        super().data_received(data)


_CLOSE = object()


@dataclass(eq=False)
class Connection:
    ws: SimConnection
    session: Session
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    dropped: bool = False


class DerivSimulator:
    def __init__(self, config: SimulatorConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.engine = Engine(self.config, clock)
        self.faults = FaultInjector(self.config.seed, self.config.faults)
        self.connections: set[Connection] = set()
        self.ports: BoundPorts | None = None
        self._server: Server | None = None
        self._control: Any = None  # aiohttp AppRunner
        self.started_at = time.time()

    # ---- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> BoundPorts:
        cfg = self.config
        self._server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            compression="deflate" if cfg.compression else None,
            ping_interval=None,  # Deriv's server does not send protocol pings; clients keep alive
            max_size=cfg.max_message_bytes,
            create_connection=SimConnection,
        )
        ws_port = next(iter(self._server.sockets)).getsockname()[1]
        control_port = None
        if cfg.control_port is not None:
            from .control import start_control

            self._control, control_port = await start_control(self, cfg.host, cfg.control_port)
        self.started_at = time.time()
        self.ports = BoundPorts(ws_port, control_port)
        log.info("deriv simulator listening on ws %s, control %s", ws_port, control_port)
        return self.ports

    async def stop(self) -> None:
        for conn in list(self.connections):
            self._drop(conn)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._control is not None:
            await self._control.cleanup()
            self._control = None

    async def __aenter__(self) -> DerivSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    def url(self, app_id: int | str | None = 1089, lang: str = "EN") -> str:
        assert self.ports is not None, "start() first"
        base = f"ws://{self.config.host}:{self.ports.ws}{WS_PATH}"
        if app_id is None:
            return base
        return f"{base}?app_id={app_id}&l={lang}"

    @property
    def control_url(self) -> str | None:
        if self.ports is None or self.ports.control is None:
            return None
        return f"http://{self.config.host}:{self.ports.control}"

    def reset(self) -> None:
        """Seed state again: accounts, books, mailbox, clock, fault rules and counters."""
        self.engine.reset()
        self.faults = FaultInjector(self.config.seed, self.config.faults)

    def drop_all(self) -> int:
        conns = list(self.connections)
        for conn in conns:
            self._drop(conn)
        return len(conns)

    # ---- handshake -----------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path.rstrip("/") != WS_PATH:
            return connection.respond(404, "Not Found\n")
        app_id = parse_qs(url.query).get("app_id", [""])[0]
        allowed = self.config.allowed_app_ids
        if not APP_ID_RE.match(app_id) or (allowed and app_id not in allowed):
            response = connection.respond(401, json.dumps({"error": "InvalidAppID"}))
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    # ---- per connection ------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert isinstance(ws, SimConnection) and ws.request is not None
        app_id = int(parse_qs(urlsplit(ws.request.path).query)["app_id"][0])
        session = self.engine.open_session(app_id)
        conn = Connection(ws, session)
        session.sink = lambda push: self._on_push(conn, push)
        self.connections.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        watchdog = asyncio.create_task(self._watchdog(conn))
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    try:
                        frame = frame.decode("utf-8")
                    except UnicodeDecodeError:
                        await ws.close()
                        break
                try:
                    request = parse_frame(frame)
                except ValueError:
                    # Deriv closes the connection on malformed JSON, without an error frame
                    await ws.close()
                    break
                self._on_request(conn, request)
                if conn.dropped:
                    break
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            watchdog.cancel()
            for task in list(conn.tasks):
                task.cancel()
            self.connections.discard(conn)
            self.engine.close_session(session)

    def _on_request(self, conn: Connection, request: Any) -> None:
        session = conn.session
        cfg = self.config
        call = find_call(request) if isinstance(request, dict) else None
        fault = self.faults.decide(call, request, session.loginid) if call else None
        if fault is not None:
            log.info("fault %s (%s) on %s", fault.id, fault.kind, call)
            if fault.kind == "drop_before":
                self._drop(conn)
                return
            if fault.kind == "rate_limit":
                self._send(conn, session.rate_limit_reply(request))
                return
            if fault.kind == "timeout" and not fault.execute:
                wait = fault.delay if fault.delay is not None else cfg.request_timeout
                self._later(conn, session.timeout_reply(request), wait, force=True)
                return
            if call is not None and fault.kind in ("other_operation", "other_line", "reused_transaction_id"):
                if fault.kind == "other_operation":
                    answer = foreign.other_operation(session, call, request, fault.execute)
                elif fault.kind == "other_line":
                    answer = foreign.other_line(session, request)
                else:
                    answer = foreign.reused_transaction_id(session, request)
                self._send(conn, answer)
                self.engine.flush()
                return
        outcome = session.handle(request)
        reply = outcome.reply
        if fault is None or reply is None:
            self._send(conn, reply)
        elif fault.kind == "drop_after":
            self.engine.flush()
            self._drop(conn)
            return
        elif fault.kind == "timeout":
            wait = fault.delay if fault.delay is not None else cfg.request_timeout
            self._later(conn, session.timeout_reply(request), wait, force=True)
        elif fault.kind == "delay":
            self._later(conn, reply, fault.delay or 0.0, request=request)
        elif fault.kind == "duplicate":
            self._send(conn, reply)
            self._send(conn, reply)
        else:
            self._send(conn, reply)
        self.engine.flush()
        if outcome.close is not None:
            conn.queue.put_nowait((_CLOSE, outcome.close))

    def _send(self, conn: Connection, message: dict[str, Any] | None) -> None:
        if message is not None and not conn.dropped:
            conn.queue.put_nowait(message)

    def _later(
        self,
        conn: Connection,
        message: dict[str, Any],
        delay: float,
        request: Any = None,
        force: bool = False,
    ) -> None:
        """Send after delay; a reply later than the request timeout becomes the Timeout error."""
        timeout = self.config.request_timeout
        if not force and delay >= timeout:
            message = conn.session.timeout_reply(request if isinstance(request, dict) else {})
            delay = timeout

        async def deliver() -> None:
            await asyncio.sleep(delay)
            self._send(conn, message)

        task = asyncio.create_task(deliver())
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    def _on_push(self, conn: Connection, push: Push) -> None:
        if self.faults.skip_stream(push.stream, push.loginid):
            log.info("fault skip_stream: %s update for %s dropped", push.stream, push.loginid)
            return
        self._send(conn, push.message)

    def _drop(self, conn: Connection) -> None:
        """Close the TCP connection without a WebSocket close frame (the client sees 1006)."""
        conn.dropped = True
        transport = conn.ws.transport
        if transport is not None:
            transport.abort()

    async def _writer(self, conn: Connection) -> None:
        ws = conn.ws
        while True:
            item = await conn.queue.get()
            if isinstance(item, tuple) and item and item[0] is _CLOSE:
                code, reason = item[1]
                with contextlib.suppress(ConnectionClosed):
                    await ws.close(code, reason)
                return
            try:
                await ws.send(dumps(item))
            except ConnectionClosed:
                return
            ws.last_activity = time.monotonic()

    async def _watchdog(self, conn: Connection) -> None:
        ws = conn.ws
        while True:
            idle = self.config.idle_timeout
            remaining = ws.last_activity + idle - time.monotonic()
            if remaining <= 0:
                log.info("dropping idle connection (%.1fs without traffic)", idle)
                self._drop(conn)
                return
            await asyncio.sleep(min(remaining, 1.0))

"""The asyncio side of the Deriv client: sockets, futures, timers. All protocol logic is in `protocol`.

- `Link`: one WebSocket, one `ProtocolCore`, a reader task, many requests in flight.
- `DerivConnection`: the persistent agent connection: reconnects with jittered exponential backoff
  (tenacity), re-authorizes and re-subscribes its streams after every reconnect, pings every 30 s,
  rate-limits its calls from `website_status.api_call_limits`, and refuses to send when `can_send()`
  says no (the gateway lost its lease).
- `ClientSession`: a short-lived connection authorized with a user's token (withdrawals, KYC).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import websockets
from tenacity import AsyncRetrying, retry_if_exception, wait_random_exponential
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from deriv_gateway import foreign_answers
from deriv_gateway.config import FrameObserver
from deriv_gateway.logs import get_logger, register_secret
from deriv_gateway.protocol import errors
from deriv_gateway.protocol.core import Outgoing, ProtocolCore, ProtocolError, Reply, StreamMessage
from deriv_gateway.protocol.ratelimit import CallLimits, RateLimiter

log = get_logger("deriv_gateway.connection")

StreamHandler = Callable[[dict[str, Any]], None]


def build_url(ws_url: str, app_id: str) -> str:
    separator = "&" if "?" in ws_url else "?"
    return f"{ws_url}{separator}{urlencode({'app_id': app_id, 'l': 'EN', 'brand': 'deriv'})}"


def _proxy_for(url: str) -> Any:
    host = urlsplit(url).hostname or ""
    return None if host in ("127.0.0.1", "localhost", "::1") else True


class Link:
    """One open WebSocket with its protocol core and reader task."""

    def __init__(
        self,
        ws: ClientConnection,
        *,
        name: str,
        observer: FrameObserver | None = None,
        on_stream: Callable[[StreamMessage], None] | None = None,
    ) -> None:
        self.ws = ws
        self.name = name
        self.core = ProtocolCore()
        self._observer = observer
        self._on_stream = on_stream
        self._waiters: dict[int, asyncio.Future[Reply]] = {}
        self.closed = asyncio.Event()
        # Why the socket ended, for the disconnect's log line (an operator's first question)
        self.close_reason = "not closed"
        self._reader = asyncio.create_task(self._read(), name=f"deriv-reader-{name}")

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        name: str,
        compression: bool,
        open_timeout: float,
        observer: FrameObserver | None = None,
        on_stream: Callable[[StreamMessage], None] | None = None,
    ) -> Link:
        ws = await connect(
            url,
            compression="deflate" if compression else None,
            open_timeout=open_timeout,
            ping_interval=None,  # Deriv keep-alive is the application-level {"ping": 1}
            close_timeout=2,
            max_size=2**21,
            max_queue=None,
            proxy=_proxy_for(url),
            user_agent_header="PenPay-deriv-gateway",
        )
        return cls(ws, name=name, observer=observer, on_stream=on_stream)

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                try:
                    event = self.core.receive(text)
                except ProtocolError as exc:
                    log.warning("deriv.bad_frame", link=self.name, error=str(exc))
                    continue
                if self._observer is not None:
                    self._observer("recv", event.message)
                if isinstance(event, Reply):
                    waiter = self._waiters.pop(event.req_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(event)
                elif isinstance(event, StreamMessage):
                    if self._on_stream is not None:
                        try:
                            self._on_stream(event)
                        except Exception:  # a consumer bug must not kill the reader
                            log.exception("deriv.stream_handler_failed", link=self.name)
                else:
                    log.debug("deriv.unsolicited", link=self.name, msg_type=event.message.get("msg_type"))
        except ConnectionClosed as closed:
            self.close_reason = _close_reason(closed)
        except Exception:
            self.close_reason = "reader failed"
            log.exception("deriv.reader_failed", link=self.name)
        else:  # a normal close (1000, 1001) ends the iteration instead of raising
            self.close_reason = _close_reason(self.ws.close_exc)
        finally:
            self._lost()

    def _lost(self) -> None:
        self.core.connection_lost()
        waiters, self._waiters = self._waiters, {}
        for req_id, waiter in waiters.items():
            if not waiter.done():
                waiter.set_exception(
                    errors.ConnectionLost("connection lost after the request was sent", req_id=req_id)
                )
        self.closed.set()

    async def request(
        self,
        call: str,
        fields: dict[str, Any] | None = None,
        *,
        value: Any = 1,
        timeout: float,  # noqa: ASYNC109
    ) -> Reply:
        """Send one request and wait for its reply (raises the typed error if the reply is an error)."""
        if self.closed.is_set():
            raise errors.NotConnected("connection is closed")
        outgoing = self.core.encode(call, fields, value=value)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiters[outgoing.req_id] = future
        try:
            reply = await self._exchange(outgoing, future, timeout)
        finally:
            self._forget(outgoing.req_id, future)
        if reply.error is not None:
            if isinstance(reply.error, errors.ForeignAnswer):
                reference = outgoing.payload.get("description")
                foreign_answers.report(
                    f"the answer to {call} names another request",
                    reply.message,
                    call=call,
                    req_id=outgoing.req_id,
                    link=self.name,
                    reference=reference if isinstance(reference, str) else None,
                )
            raise reply.error
        return reply

    async def _exchange(self, outgoing: Outgoing, future: asyncio.Future[Reply], timeout: float) -> Reply:  # noqa: ASYNC109
        if self._observer is not None:
            self._observer("send", outgoing.payload)
        # websockets writes the frame to the transport synchronously when the connection is OPEN, and
        # only then waits for the buffer to drain: a ConnectionClosed raised after that (a drop under
        # backpressure) does not mean the frame stayed here. Only a send refused on entry is "not sent".
        handed_over = self.ws.protocol.state is State.OPEN
        try:
            await self.ws.send(outgoing.text)
        except ConnectionClosed:
            if future.done() and not future.cancelled() and future.exception() is None:
                return future.result()  # answered while the buffer drained: the answer stands
            if handed_over:
                raise errors.ConnectionLost(
                    "connection lost while the frame was being written; it may have left",
                    req_id=outgoing.req_id,
                ) from None
            raise errors.NotConnected("connection closed before the frame was written") from None
        # One timer that fails the reply's future (asyncio.timeout would add a context manager, and
        # wait_for a waiter and callbacks, on every request); cancelled once the reply is in.
        timer = future.get_loop().call_later(timeout, _time_out, future, outgoing.call, timeout)
        try:
            return await future
        finally:
            timer.cancel()

    def _forget(self, req_id: int, future: asyncio.Future[Reply]) -> None:
        """No orphan waiter once the caller stops waiting (answered, failed, timed out, cancelled): a
        late reply becomes unsolicited, and an exception a connection loss set on the future meanwhile
        is marked retrieved (else asyncio logs "Future exception was never retrieved")."""
        if self._waiters.pop(req_id, None) is not None:
            self.core.cancel(req_id)
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._reader), 3)
        if not self._reader.done():
            self._reader.cancel()

    async def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()
        await self.close()


def _close_reason(closed: ConnectionClosed) -> str:
    """The close frames' codes and reasons ("no close frame" when the TCP connection just ended)."""
    if closed.rcvd is not None:
        return f"closed by Deriv: {closed.rcvd.code} {closed.rcvd.reason}".rstrip()
    if closed.sent is not None:
        return f"closed by the gateway: {closed.sent.code} {closed.sent.reason}".rstrip()
    return "no close frame (the TCP connection ended)"


def _time_out(future: asyncio.Future[Reply], call: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(errors.RequestTimeout(f"no reply to {call} within {timeout:g}s"))


@dataclass
class Subscription:
    call: str
    fields: dict[str, Any]
    handler: StreamHandler
    req_id: int | None = field(default=None)


class DerivConnection:
    """The persistent connection authorized with one token (the payment agent's)."""

    def __init__(
        self,
        url: str,
        app_id: str,
        token: str,
        *,
        name: str = "agent",
        request_timeout: float = 20.0,
        ping_interval: float = 30.0,
        pong_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        compression: bool = True,
        rate_limit_enabled: bool = True,
        rate_limit_safety: float = 0.9,
        observer: FrameObserver | None = None,
        can_send: Callable[[], bool] | None = None,
        on_ready: Callable[[DerivConnection], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        register_secret(token)
        self.url = build_url(url, app_id)
        self._token = token
        self.name = name
        self.request_timeout = request_timeout
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.compression = compression
        self.rate_limit_enabled = rate_limit_enabled
        self.rate_limit_safety = rate_limit_safety
        self._observer = observer
        self._can_send = can_send or (lambda: True)
        self._on_ready = on_ready
        self.limiter = RateLimiter()
        self.authorization: dict[str, Any] = {}
        self.website_status: dict[str, Any] = {}
        self.connects = 0
        self._subs: list[Subscription] = []
        self._link: Link | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name=f"deriv-conn-{self.name}")

    async def wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109
        if self._usable():  # the usual case: no wait_for task and timer per request
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not self._ready.is_set():
                await asyncio.wait_for(self._ready.wait(), max(0.0, deadline - loop.time()))
            if self._usable():
                return
            # still flagged ready for a link that has just closed: the run loop clears it shortly
            if loop.time() >= deadline:
                raise TimeoutError
            await asyncio.sleep(0.005)

    def _usable(self) -> bool:
        link = self._link
        return self._ready.is_set() and link is not None and not link.closed.is_set()

    @property
    def usable(self) -> bool:
        """Authorized on a socket that is still open: a request may go now."""
        return self._usable()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def loginid(self) -> str | None:
        return self.authorization.get("loginid")

    async def close(self) -> None:
        self._closing = True
        self._ready.clear()
        task, self._task = self._task, None
        link = self._link
        if link is not None:
            await link.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def drop(self) -> None:
        """Abort the current socket (tests, and the pinger on a missing pong): a reconnect follows."""
        link = self._link
        if link is not None:
            await link.abort()

    async def _run(self) -> None:
        while not self._closing:
            try:
                link = await self._connect_with_backoff()
            except asyncio.CancelledError:
                raise
            self._link = link
            pinger = asyncio.create_task(self._ping_loop(link), name=f"deriv-ping-{self.name}")
            try:
                await link.closed.wait()
            finally:
                self._ready.clear()
                pinger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pinger
                for sub in self._subs:
                    sub.req_id = None
            if not self._closing:
                log.warning("deriv.disconnected", link=self.name, reason=link.close_reason)

    async def _connect_with_backoff(self) -> Link:
        def retryable(exc: BaseException) -> bool:
            return not isinstance(exc, asyncio.CancelledError) and not self._closing

        retrying = AsyncRetrying(
            wait=wait_random_exponential(multiplier=self.backoff_initial, max=self.backoff_max),
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._connect_once(attempt.retry_state.attempt_number)
        raise AssertionError("unreachable")

    async def _connect_once(self, attempt: int) -> Link:
        link = await Link.open(
            self.url,
            name=self.name,
            compression=self.compression,
            open_timeout=self.connect_timeout,
            observer=self._observer,
            on_stream=self._dispatch_stream,
        )
        try:
            timeout = self.request_timeout
            if self._token:
                reply = await link.request("authorize", value=self._token, timeout=timeout)
                self.authorization = reply.message["authorize"]
            status = await link.request("website_status", timeout=timeout)
            self.website_status = status.message.get("website_status") or {}
            if self.rate_limit_enabled:
                self.limiter.configure(
                    CallLimits.from_website_status(self.website_status, self.rate_limit_safety)
                )
            for sub in self._subs:
                await self._subscribe_on(link, sub)
        except BaseException as exc:
            if isinstance(exc, errors.DerivError):
                log.warning("deriv.session_setup_failed", link=self.name, code=exc.code, attempt=attempt)
            await link.close()
            raise
        self.connects += 1
        log.info("deriv.connected", link=self.name, loginid=self.loginid, connects=self.connects)
        self._link = link  # before the flag: "ready" always refers to this link
        self._ready.set()
        if self._on_ready is not None:
            asyncio.create_task(self._on_ready(self))  # noqa: RUF006 - fire and forget hook
        return link

    async def _subscribe_on(self, link: Link, sub: Subscription) -> None:
        fields = {**sub.fields, "subscribe": 1}
        reply = await link.request(sub.call, fields, timeout=self.request_timeout)
        sub.req_id = reply.req_id
        sub.handler(reply.message)

    def _dispatch_stream(self, event: StreamMessage) -> None:
        for sub in self._subs:
            if sub.req_id == event.req_id:
                sub.handler(event.message)
                return

    async def _ping_loop(self, link: Link) -> None:
        while not link.closed.is_set():
            await asyncio.sleep(self.ping_interval)
            try:
                await link.request("ping", timeout=self.pong_timeout)
            except errors.RequestTimeout:
                log.warning("deriv.ping_unanswered", link=self.name)
                await link.abort()
                return
            except errors.DerivError as exc:
                # any answer (RateLimit, say) proves the socket alive; a lost one ends the reader anyway
                log.warning("deriv.ping_refused", link=self.name, code=exc.code)

    # --- requests --------------------------------------------------------------------

    async def subscribe(self, call: str, fields: dict[str, Any], handler: StreamHandler) -> Subscription:
        """A stream kept across reconnects (re-subscribed after each re-authorization). A refused
        subscription is logged and kept: it is asked for again with the next connection."""
        sub = Subscription(call, dict(fields), handler)
        self._subs.append(sub)
        link = self._link
        if self._ready.is_set() and link is not None:
            try:
                await self._subscribe_on(link, sub)
            except errors.DerivError as exc:
                log.warning("deriv.subscribe_failed", link=self.name, call=call, code=exc.code)
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """End a stream: not subscribed again after a reconnect, and forgotten at Deriv now (its late
        messages become unsolicited frames). A failed `forget` is only logged: the stream is gone here."""
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)
        req_id, sub.req_id = sub.req_id, None
        link = self._link
        if req_id is None or link is None:
            return
        stream_id = link.core.forget_stream(req_id)
        if not stream_id or link.closed.is_set():
            return
        try:
            await self.request("forget", value=stream_id)
        except errors.DerivError as exc:
            log.info("deriv.forget_failed", link=self.name, call=sub.call, code=exc.code)

    async def request(
        self,
        call: str,
        fields: dict[str, Any] | None = None,
        *,
        value: Any = 1,
        timeout: float | None = None,  # noqa: ASYNC109 - per-request timeout, the API's point
    ) -> dict[str, Any]:
        """One call over the shared socket; returns the reply message or raises a typed DerivError."""
        timeout = self.request_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if not self._can_send():
            raise errors.NotLeader("this gateway does not hold the lease")
        try:
            if not self.usable:
                await self.wait_ready(timeout)
        except TimeoutError:
            raise errors.NotConnected("not connected to Deriv") from None
        if self.rate_limit_enabled:
            now = time.monotonic()
            delay = self.limiter.reserve(call, now, max_delay=deadline - now)
            if delay > 0:
                if now + delay > deadline:  # not reserved: refused, retry after `delay`
                    raise errors.RateLimit(
                        f"client-side rate limit for {call}: retry in {delay:.1f}s",
                        details={"retry_after": delay},
                    )
                await asyncio.sleep(delay)
        link = self._link
        if link is None or not self._ready.is_set():
            raise errors.NotConnected("not connected to Deriv")
        # the lease may have been lost while waiting: checked again right before the write
        if not self._can_send():
            raise errors.NotLeader("this gateway does not hold the lease")
        remaining = max(0.05, deadline - time.monotonic())
        reply = await link.request(call, fields, value=value, timeout=remaining)
        return reply.message


class ClientSession:
    """A short-lived connection authorized with a user's token; the agent connection is never used for it."""

    def __init__(
        self,
        url: str,
        app_id: str,
        token: str,
        *,
        timeout: float = 20.0,
        compression: bool = True,
        observer: FrameObserver | None = None,
    ) -> None:
        register_secret(token)
        self.url = build_url(url, app_id)
        self._token = token
        self.timeout = timeout
        self.compression = compression
        self._observer = observer
        self._link: Link | None = None
        self.authorization: dict[str, Any] = {}

    async def __aenter__(self) -> ClientSession:
        try:
            self._link = await Link.open(
                self.url,
                name="client",
                compression=self.compression,
                open_timeout=self.timeout,
                observer=self._observer,
            )
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
            raise errors.NotConnected(f"cannot connect to Deriv: {type(exc).__name__}") from None
        try:
            reply = await self._link.request("authorize", value=self._token, timeout=self.timeout)
        except BaseException:
            await self._link.close()
            raise
        self.authorization = reply.message["authorize"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._link is not None:
            await self._link.close()

    @property
    def loginid(self) -> str:
        return str(self.authorization.get("loginid") or "")

    async def request(
        self, call: str, fields: dict[str, Any] | None = None, *, value: Any = 1
    ) -> dict[str, Any]:
        assert self._link is not None
        reply = await self._link.request(call, fields, value=value, timeout=self.timeout)
        return reply.message

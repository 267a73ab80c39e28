"""The agent's balance: asked once (GetBalance), or streamed to whoever watches (WatchBalance)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from deriv_gateway.agent_account import agent_digits, wait_agent_ready
from deriv_gateway.connection import DerivConnection, Subscription
from deriv_gateway.logs import get_logger
from deriv_gateway.protocol.messages import from_wire_amount
from deriv_gateway.term import LeadershipTerm

log = get_logger("deriv_gateway.balance_watch")


@dataclass(frozen=True, slots=True)
class Balance:
    loginid: str
    cents: int
    currency: str


class BalanceWatch:
    def __init__(self, agent: DerivConnection, term: LeadershipTerm, *, request_timeout: float) -> None:
        self.agent = agent
        self.term = term
        self._request_timeout = request_timeout
        self._watchers: set[asyncio.Queue[Balance]] = set()
        # The agent's balance stream, open while someone watches (WatchBalance): Deriv pushes a
        # balance message after every transfer, which cost ~8% of the gateway's CPU per Transfer
        # with nobody reading it (bench/README.md).
        self.latest: Balance | None = None
        self._stream: Subscription | None = None
        self._lock = asyncio.Lock()
        self._closing: asyncio.Task[None] | None = None

    def stop(self) -> None:
        """Ends every watch (their generators return)."""
        for queue in list(self._watchers):
            queue.put_nowait(None)  # type: ignore[arg-type]

    def _on_balance(self, message: dict[str, Any]) -> None:
        body = message.get("balance") or {}
        currency = str(body.get("currency") or "USD")
        try:
            cents = from_wire_amount(body.get("balance"), agent_digits(self.agent, currency))
        except ValueError:
            log.warning("gateway.bad_balance_frame")
            return
        self.latest = Balance(str(body.get("loginid") or self.agent.loginid or ""), cents, currency)
        for queue in list(self._watchers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(self.latest)

    async def get(self) -> Balance:
        self.term.token()
        await wait_agent_ready(self.agent, self._request_timeout)
        message = await self.agent.request("balance")
        body = message["balance"]
        currency = str(body["currency"])
        return Balance(
            str(body["loginid"]),
            from_wire_amount(body["balance"], agent_digits(self.agent, currency)),
            currency,
        )

    async def watch(self) -> AsyncIterator[Balance]:
        self.term.token()
        queue: asyncio.Queue[Balance] = asyncio.Queue(maxsize=1000)
        await self._open_stream()  # its first message (the balance now) sets self.latest
        self._watchers.add(queue)
        try:
            if self.latest is not None:
                yield self.latest
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            self._watchers.discard(queue)
            if not self._watchers:
                # not awaited here: a generator closed by a cancelled RPC may not await in finally
                # (the task is kept: the loop holds only a weak reference to it)
                self._closing = asyncio.get_running_loop().create_task(self._close_stream())

    async def _open_stream(self) -> None:
        async with self._lock:
            if self._stream is not None:
                return
            self._stream = await self.agent.subscribe("balance", {}, self._on_balance)

    async def _close_stream(self) -> None:
        async with self._lock:
            stream = self._stream
            if stream is None or self._watchers:
                return
            self._stream, self.latest = None, None  # not kept current any more
            await self.agent.unsubscribe(stream)

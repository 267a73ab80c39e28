"""Background callback delivery. Never blocks an API reply; every task is cancelled cleanly on close().

A job sleeps until its transaction completes, runs `complete()` (which moves the money in the books and
returns the callbacks to send), and then delivers each callback with its faults applied: dropped,
late, duplicated, or held back until the next callback has been delivered (out of order).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from yarl import URL

from mpesa_adapter.simulator.clock import Clock

log = logging.getLogger("penpay.sim.mpesa")


@dataclass
class Delivery:
    url: str
    body: dict[str, Any]
    kind: str  # stk_callback | b2c_result | b2c_queue_timeout | status_result | balance_result | ...
    ref: str  # the id this callback is about
    copies: int = 1
    extra_delay: float = 0.0
    hold: bool = False  # out of order: wait for the next callback (at most hold_limit seconds)
    drop: bool = False
    notes: list[str] = field(default_factory=list)


class Dispatcher:
    def __init__(
        self,
        clock: Clock,
        settings: Callable[[], tuple[float, float, float, int]],
    ) -> None:
        # settings() -> (timeout, duplicate_gap, hold_limit, retries), read at delivery time
        self._clock = clock
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._released = asyncio.Event()
        self._seq = itertools.count(1)
        self.log: list[dict[str, Any]] = []

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._released = asyncio.Event()

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, limit: float = 30.0) -> None:
        """Wait until no job or delivery is outstanding (tests, orderly shutdown)."""
        async with asyncio.timeout(limit):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def schedule(self, delay: float, complete: Callable[[], list[Delivery]]) -> None:
        self._spawn(self._job(delay, complete))

    def send(self, delivery: Delivery) -> None:
        self._spawn(self._deliver(delivery))

    async def _job(self, delay: float, complete: Callable[[], list[Delivery]]) -> None:
        await asyncio.sleep(max(delay, 0.0))
        try:
            deliveries = complete()
        except Exception:  # a bug in completion must not kill the loop silently
            log.exception("completing a simulated transaction failed")
            return
        for delivery in deliveries:
            self._spawn(self._deliver(delivery))

    async def _deliver(self, d: Delivery) -> None:
        if d.drop:
            self._record(d, copy=0, status=None, error=None, note="dropped: never delivered")
            return
        if d.extra_delay > 0:
            await asyncio.sleep(d.extra_delay)
        _, gap, hold_limit, _ = self._settings()
        if d.hold:
            released = self._released
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), hold_limit)
        for copy in range(1, max(d.copies, 1) + 1):
            if copy > 1:
                await asyncio.sleep(gap)
            await self._post(d, copy)
        if not d.hold:
            released, self._released = self._released, asyncio.Event()
            released.set()

    async def _post(self, d: Delivery, copy: int) -> None:
        timeout, _, _, retries = self._settings()
        assert self._session is not None, "dispatcher not started"
        for attempt in range(retries + 1):
            try:
                async with self._session.post(
                    d.url, json=d.body, timeout=aiohttp.ClientTimeout(total=timeout)
                ) as resp:
                    await resp.read()
                    self._record(d, copy, resp.status, None, None)
                    if resp.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._record(d, copy, None, f"{type(exc).__name__}: {exc}", None)
            if attempt < retries:
                await asyncio.sleep(min(2.0**attempt, 30.0))

    def _record(
        self, d: Delivery, copy: int, status: int | None, error: str | None, note: str | None
    ) -> None:
        entry = {
            "seq": next(self._seq),
            "at": self._clock.now().isoformat(),
            "kind": d.kind,
            "ref": d.ref,
            "url": d.url,
            "copy": copy,
            "status": status,
            "error": error,
            "notes": [*d.notes, *([note] if note else [])],
            "body": d.body,
        }
        self.log.append(entry)
        if error:
            log.warning("callback %s %s to %s failed: %s", d.kind, d.ref, _origin(d.url), error)
        else:
            log.info("callback %s %s to %s -> %s %s", d.kind, d.ref, _origin(d.url), status, note or "")


def _origin(url: str) -> str:
    """Only scheme, host and port: callback paths carry the receiver's secret."""
    try:
        return str(URL(url).origin())
    except ValueError:
        return "<unparseable url>"

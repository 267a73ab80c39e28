"""One attempt per money operation in this process (single-flight), shared by both transports."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

from deriv_gateway.money_call import MoneyResult


class SingleFlight:
    def __init__(self) -> None:
        # operation key -> (mode, attempt)
        self._inflight: dict[str, tuple[str, asyncio.Future[MoneyResult]]] = {}

    async def run(self, key: str, mode: str, factory: Callable[[], Awaitable[MoneyResult]]) -> MoneyResult:
        """One attempt per operation in this process: calls in the same mode share it; a call in
        another mode (send / resolve / sweep) waits for it to end, so they never overlap.

        The attempt is a task of its own, awaited through a shield: a cancelled caller (an RPC
        cancelled by its client) stops waiting, the attempt runs on to its end, so a journal row is
        never abandoned half-way; nothing more needs shielding around this call.
        """
        while True:
            current = self._inflight.get(key)
            if current is None:
                break
            current_mode, existing = current
            if current_mode == mode:
                return await asyncio.shield(existing)
            await asyncio.wait([existing])
        attempt: asyncio.Future[MoneyResult] = asyncio.ensure_future(factory())
        self._inflight[key] = (mode, attempt)
        attempt.add_done_callback(partial(self._attempt_ended, key))
        return await asyncio.shield(attempt)

    def _attempt_ended(self, key: str, attempt: asyncio.Future[MoneyResult]) -> None:
        current = self._inflight.get(key)
        if current is not None and current[1] is attempt:
            del self._inflight[key]
        if not attempt.cancelled():
            attempt.exception()  # mark retrieved: coalesced callers may be gone

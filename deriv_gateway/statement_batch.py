"""Lookups of PenPay references in the agent's statement, coalesced into shared statement reads.

A socket drop leaves every transfer in flight on it with an unknown outcome at once. Looked up one
by one, they spend one `statement` call each from Deriv's small "outcome" allowance (25 a minute),
so all but the first few wait a minute and more. Here every reference asked for while a read is
queued joins that read: one paged scan answers them all.

A lookup never joins a read already running: that read may have begun before the operation it asks
about executed, and "not in the statement" from it would prove nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from deriv_gateway.protocol.messages import StatementMatch

# scan(references, since) -> the lines found for those references
Scan = Callable[[set[str], datetime], Awaitable[dict[str, StatementMatch]]]


@dataclass(slots=True)
class _Lookup:
    reference: str
    since: datetime
    answer: asyncio.Future[StatementMatch | None]


class StatementBatcher:
    def __init__(self, scan: Scan, ready: Callable[[], Awaitable[None]]) -> None:
        self._scan = scan
        self._ready = ready
        self._queued: list[_Lookup] = []
        self._reader: asyncio.Task[None] | None = None
        self.reads = 0  # statement scans made (tests, metrics)

    async def find(self, reference: str, since: datetime) -> StatementMatch | None:
        """The statement line carrying `reference`, read from `since` on (None: not there)."""
        lookup = _Lookup(reference, since, asyncio.get_running_loop().create_future())
        self._queued.append(lookup)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_all(), name="deriv-statement-batch")
        return await lookup.answer

    async def _read_all(self) -> None:
        while self._queued:
            batch: list[_Lookup] = []
            try:
                # after a drop: the lookups of every request that was on the socket gather meanwhile
                await self._ready()
                batch, self._queued = self._queued, []
                self.reads += 1
                found = await self._scan({item.reference for item in batch}, min(i.since for i in batch))
            except BaseException as exc:
                if not batch:
                    batch, self._queued = self._queued, []
                for item in batch:
                    _fail(item.answer, exc)
                if isinstance(exc, asyncio.CancelledError):
                    for item in self._queued:
                        item.answer.cancel()
                    raise
                continue
            for item in batch:
                if not item.answer.done():  # a caller that gave up has a cancelled future
                    item.answer.set_result(found.get(item.reference))


def _fail(answer: asyncio.Future[StatementMatch | None], exc: BaseException) -> None:
    if answer.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        answer.cancel()
        return
    answer.set_exception(exc)
    answer.exception()  # marked retrieved: its caller may have stopped waiting meanwhile

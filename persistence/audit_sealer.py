"""The audit sealer: chains committed audit records (audit_pending) into audit_logs, one short
transaction per batch.

Two ways to run it, chosen per engine by the composition root (PENPAY_AUDIT_SEALER):
- background: the processes that write records never seal; one sealer (`penpay worker audit`,
  workers/audit_sealing.py) chains every pending record every few tenths of a second, in large
  batches. A unit of work costs its one INSERT into audit_pending; the chain, a fraction of a seal.
- inline (tools, tests): a unit of work that committed audit records calls
  `await sealer_for(engine).sealed()` once its connection is back in the pool: that returns after a
  seal that started after the call has finished, so the caller's records are in the chain. Calls
  that arrive while a seal runs are served together by the next one (group commit).

Either way a record is durable from its action's commit: a record whose process died before its seal
stays in audit_pending and is chained by the next seal of any process (every seal takes every
pending record, not only its own).
"""

from __future__ import annotations

import asyncio
import weakref

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.audit import seal_pending

BATCH_SIZE = 1000

log = structlog.get_logger("penpay.audit")


class AuditSealer:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._lock = asyncio.Lock()
        self._requested = 0  # calls to sealed() so far
        self._covered = 0  # every call up to this number is sealed
        self._wanted = False  # seal_soon() called since the background seal last started
        self._background: asyncio.Task[None] | None = None

    def seal_soon(self) -> None:
        """Seal in the background: for a caller that need not find its records chained when it
        returns (they are committed in audit_pending with the action either way)."""
        self._wanted = True
        if self._background is None or self._background.done():
            self._background = asyncio.get_running_loop().create_task(self._seal_while_wanted())

    async def settled(self) -> None:
        """Return once the background seal (if one runs) has finished: for an orderly shutdown."""
        while self._background is not None and not self._background.done():
            await asyncio.shield(self._background)

    async def _seal_while_wanted(self) -> None:
        while self._wanted:
            self._wanted = False
            await self.sealed()

    async def sealed(self) -> None:
        """Return once the records committed before this call are in the chain (best effort: a seal
        that fails is logged and left to the next one; the records stay committed in audit_pending)."""
        self._requested += 1
        ticket = self._requested
        async with self._lock:
            if self._covered >= ticket:
                return  # a seal that started after our call has run
            covers = self._requested
            try:
                await self.seal_all()
            except Exception as exc:  # the business commit stands; the next seal takes these records
                log.warning("audit.seal_failed", error_type=type(exc).__name__, error=str(exc)[:200])
                return
            self._covered = max(self._covered, covers)

    async def after_commit(self, *, wait: bool = True) -> None:
        """Records were just committed: chain them now (wait) or soon, unless a background sealer
        owns this engine's chain (then they wait for it, committed)."""
        if sealed_in_background(self._engine):
            return
        if wait:
            await self.sealed()
        else:
            self.seal_soon()

    async def seal_all(self) -> int:
        """Seal every committed pending record, a batch per transaction; returns how many."""
        sealed = 0
        while True:
            async with self._engine.connect() as connection:
                batch = await seal_pending(connection, batch_size=BATCH_SIZE)
                # Nothing sealed: nothing written, so no commit (the head lock goes with the rollback).
                await (connection.commit() if batch else connection.rollback())
            sealed += batch
            if batch < BATCH_SIZE:
                return sealed


_sealers: weakref.WeakKeyDictionary[AsyncEngine, dict[asyncio.AbstractEventLoop, AuditSealer]] = (
    weakref.WeakKeyDictionary()
)


# Engines whose chain a background sealer owns: their units of work never seal.
_background: weakref.WeakSet[AsyncEngine] = weakref.WeakSet()


def seal_in_background(engine: AsyncEngine) -> None:
    """From now on this process leaves `engine`'s records to the background sealer."""
    _background.add(engine)


def sealed_in_background(engine: AsyncEngine) -> bool:
    return engine in _background


def sealer_for(engine: AsyncEngine) -> AuditSealer:
    loop = asyncio.get_running_loop()
    per_loop = _sealers.setdefault(engine, {})
    sealer = per_loop.get(loop)
    if sealer is None:
        for stale in [other for other in per_loop if other.is_closed()]:
            del per_loop[stale]
        sealer = per_loop[loop] = AuditSealer(engine)
    return sealer

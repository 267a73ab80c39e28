"""The periodic reconciliation run (`penpay worker reconcile`).

Each run covers what the last successful one did not: from the cursor (the first time, and never
further back than the provider still lists, `reach`) to `lag` before now. A failed run moves no
cursor: the next run covers its window again."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Protocol

from application.alerts import raise_alert
from application.reconciliation.ports import MPESA_C2B
from application.reconciliation.service import Reconciler
from domain.shared.clock import Clock

log = logging.getLogger("penpay.reconcile")


class Cursors(Protocol):
    async def cursor(self, source: str) -> datetime | None: ...


class ReconcileWorker:
    def __init__(
        self,
        reconciler: Reconciler,
        cursors: Cursors,
        *,
        clock: Clock,
        reach: timedelta,
        lag: timedelta,
        interval: float,
    ) -> None:
        self._reconciler = reconciler
        self._cursors = cursors
        self._clock = clock
        self._reach = reach
        self._lag = lag
        self.interval = interval

    async def run_once(self) -> None:
        now = self._clock.now()
        oldest = now - self._reach
        start = await self._cursors.cursor(MPESA_C2B) or oldest
        if start < oldest:
            raise_alert(
                "reconciliation_gap",
                f"reconciled only to {start.isoformat()}: M-Pesa no longer lists what came before "
                f"{oldest.isoformat()}; that part needs its statement",
            )
            start = oldest
        end = now - self._lag
        if end > start:
            report = await self._reconciler.run(start, end, now=now, trigger="worker")
            log.info(
                "reconcile.run run_id=%s status=%s unexplained=%d",
                report.run_id,
                report.status,
                report.unexplained,
            )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.run_once()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except TimeoutError:
                pass

"""The background audit sealer (`penpay worker audit`, the embedded stack): the one place the audit
chain grows when PENPAY_AUDIT_SEALER=background.

Every `interval` seconds it chains every record committed to audit_pending since its last pass
(persistence.audit_sealer.AuditSealer.seal_all: one head lock and one multi-row insert per batch of
up to 1000), so the processes that write records pay one INSERT each and never wait on the chain
head. An idle pass is two reads and a rollback. Records from a process that died after its commit
are chained like any other. Seals failing for longer than `alert_after` raise `audit_seal_failing`
(the records stay committed in audit_pending; the auditor's audit_chain check also reports how long
the oldest has waited).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from application.alerts import raise_alert
from persistence.audit_sealer import AuditSealer
from workers import metrics

log = structlog.get_logger("penpay.audit")


class BackgroundSealer:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        interval: float = 0.5,
        alert_after: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sealer = AuditSealer(engine)
        self.interval = interval
        self._alert_after = alert_after
        self._monotonic = monotonic
        self._failing_since: float | None = None
        self._alerted = False

    async def seal_once(self) -> int:
        """One pass: every record committed so far, chained; returns how many (0 after a failure)."""
        try:
            sealed = await self._sealer.seal_all()
        except Exception as exc:  # the records stay committed; the next pass takes them
            now = self._monotonic()
            if self._failing_since is None:
                self._failing_since = now
            log.warning("audit.seal_failed", error_type=type(exc).__name__, error=str(exc)[:200])
            if not self._alerted and now - self._failing_since >= self._alert_after:
                self._alerted = True
                raise_alert(
                    "audit_seal_failing",
                    "the audit sealer has not chained records for a while; they wait in audit_pending",
                    error=type(exc).__name__,
                    seconds=int(now - self._failing_since),
                )
            return 0
        if self._alerted:
            log.info("audit.seal_recovered")
        self._failing_since, self._alerted = None, False
        metrics.AUDIT_SEALED.inc(sealed)
        return sealed

    async def run(self, stop: asyncio.Event) -> None:
        log.info("audit.sealer_started", interval=self.interval)
        while not stop.is_set():
            await self.seal_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
        await self.seal_once()  # what the last moments committed, before the process goes
        log.info("audit.sealer_stopped")

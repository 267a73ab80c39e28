"""OutboxRelay: committed `domain_events` rows -> the bus, then marked published.

One pass (`relay_once`), in one database transaction:

1. claim up to `batch_size` unpublished rows, oldest first, `FOR UPDATE SKIP LOCKED`
   (persistence.outbox_reader: never "id > last seen", so late commits are not skipped);
2. publish them to their stream (the row's `stream` column) as EventEnvelope fields;
3. set `published_at` and add to `publish_attempts`; commit.

A crash between 2 and 3 publishes the batch again: harmless, consumers dedupe by event id.
If the bus refuses the batch, the rows get `publish_attempts + 1`, stay pending, and the
loop backs off. Relays may run side by side (MariaDB: disjoint batches by SKIP LOCKED;
SQLite: serialised by BEGIN IMMEDIATE). On MariaDB the relay's transaction runs at READ
COMMITTED so its locking read takes record locks only, no gap locks that would stall
writers inserting new events.

While `run()` loops on MariaDB it keeps one connection, its isolation level set once, and an idle
pass ends nothing: at READ COMMITTED a claim that found no row holds no lock and no snapshot, so the
transaction it opened simply serves the next pass (an idle pass is one statement, not a SET, the
claim, an empty COMMIT and the SET back). A pass that claimed rows commits as before.

The loop also rolls up the hot ledger accounts every `rollup_interval` seconds
(persistence.ledger_rollup): a short transaction of its own that waits on no posting. How often
changes nothing a reader sees (a balance is balance_cents plus what is pending), only how many
pending rows a balance read sums.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.shared.clock import Clock, SystemClock
from persistence import outbox_reader
from persistence.float_leases import ABANDONED_AFTER, retire_abandoned
from persistence.ledger_rollup import roll_up
from workers import metrics
from workers.bus import MessageBus
from workers.envelope import EventEnvelope

log = structlog.get_logger("penpay.relay")


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        bus: MessageBus,
        *,
        batch_size: int = 100,
        poll_interval: float = 0.5,
        max_backoff: float = 30.0,
        rollup_interval: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self._engine = engine
        self._bus = bus
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.rollup_interval = rollup_interval
        self._leases_looked_at: datetime | None = None
        self._clock = clock or SystemClock()

    @property
    def _mariadb(self) -> bool:
        return self._engine.dialect.name in ("mysql", "mariadb")

    async def _connect(self) -> AsyncConnection:
        connection = await self._engine.connect()
        if self._mariadb:
            await connection.execution_options(isolation_level="READ COMMITTED")
        return connection

    async def relay_once(self) -> int:
        """Publish one batch; returns how many events were published."""
        connection = await self._connect()
        try:
            return await self._pass(connection, keep_idle=False)
        finally:
            await connection.close()

    async def _pass(self, connection: AsyncConnection, *, keep_idle: bool) -> int:
        """One claim on `connection`; `keep_idle`: leave the transaction open when nothing was
        claimed (MariaDB at READ COMMITTED only: it then holds nothing)."""
        failure: Exception | None = None
        if not connection.in_transaction():
            await connection.begin()
        try:
            rows = await outbox_reader.claim_pending(connection, self.batch_size)
            if not rows:
                if not keep_idle:
                    await connection.commit()
                return 0
            messages = [(row.stream, EventEnvelope.from_pending(row).to_fields()) for row in rows]
            ids = [row.id for row in rows]
            try:
                await self._bus.publish(messages)
            except Exception as exc:
                failure = exc  # commit the attempt count, then report
                await outbox_reader.count_failed_attempt(connection, ids)
            else:
                await outbox_reader.mark_published(connection, ids, self._clock.now())
            await connection.commit()
        except BaseException:
            if connection.in_transaction():
                with contextlib.suppress(Exception):  # a dead connection: the caller's error stands
                    await connection.rollback()
            raise
        if failure is not None:
            metrics.PUBLISH_FAILURES.inc()
            raise failure
        for row in rows:
            metrics.EVENTS_PUBLISHED.labels(stream=row.stream).inc()
        log.debug("relay.published", count=len(rows), first_event_id=str(rows[0].id))
        return len(rows)

    async def _roll_up(self) -> None:
        try:
            now = self._clock.now()
            rolled = await roll_up(self._engine, now)
            # A lease whose process died keeps its allowance from the float until someone retires
            # it; looked for at half the time it is left (not at every roll-up: a read each second).
            if self._leases_looked_at is None or now - self._leases_looked_at >= ABANDONED_AFTER / 2:
                self._leases_looked_at = now
                await retire_abandoned(self._engine, now)
        except Exception as exc:  # the balances stay right without it; try again next time
            log.warning("relay.rollup_failed", error=type(exc).__name__)
        else:
            if rolled:
                log.debug("relay.rolled_up", rows=rolled)

    async def drain(self) -> int:
        """Publish batches until nothing is pending; returns the total published."""
        total = 0
        while (published := await self.relay_once()) > 0:
            total += published
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set: full batches back to back, else one pass per interval."""
        log.info("relay.started", batch_size=self.batch_size, poll_interval=self.poll_interval)
        delay = self.poll_interval
        held: AsyncConnection | None = None  # MariaDB: one connection for the whole loop
        loop = asyncio.get_running_loop()
        next_rollup = loop.time() + self.rollup_interval
        try:
            while not stop.is_set():
                if loop.time() >= next_rollup:
                    next_rollup = loop.time() + self.rollup_interval
                    await self._roll_up()
                try:
                    if not self._mariadb:
                        published = await self.relay_once()
                    else:
                        if held is None:
                            held = await self._connect()
                        published = await self._pass(held, keep_idle=True)
                    delay = 0.0 if published >= self.batch_size else self.poll_interval
                except Exception as exc:
                    if held is not None:  # a fresh connection next pass (the old may be dead)
                        with contextlib.suppress(Exception):
                            await held.close()
                        held = None
                    delay = min(max(delay * 2, self.poll_interval, 0.1), self.max_backoff)
                    log.warning("relay.failed", error=type(exc).__name__, retry_in=delay)
                if delay:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
        finally:
            if held is not None:
                with contextlib.suppress(Exception):
                    await held.close()
        log.info("relay.stopped")

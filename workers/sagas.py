"""The saga workers: wake-ups from the bus, and the sweeper for whatever no event wakes.

Events only say "look at transaction X again"; what to do is decided from the database by
SagaRunner.advance(), so a duplicate, late, reordered or lost event changes nothing. The
sweeper is what makes a lost event (in-process bus after a restart, a message dead-lettered,
a callback that never came) harmless: every waiting transaction is looked at again after a
while, and the decisions' timeouts and bounded attempts take it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import failure_fields
from application.payments.decisions import next_due
from application.payments.saga import SagaRunner
from domain.payments.events import (
    DepositInitiated,
    MpesaCallbackReceived,
    MpesaDisbursementCompleted,
    MpesaDisbursementFailed,
    MpesaDisbursementOutcomeUnknown,
    RefundRequested,
    ReviewRetryApproved,
    TransactionStatusChanged,
)
from domain.payments.status import TransactionStatus, TransactionType
from domain.shared.clock import Clock, SystemClock
from domain.shared.ids import TransactionId
from persistence.saga_queries import IN_FLIGHT_STATUSES, SweepPosition, in_flight, stale_transaction_ids
from workers.bus import MessageBus
from workers.consumer import EventConsumer
from workers.envelope import EventEnvelope
from workers.metrics import IN_FLIGHT, OLDEST_IN_FLIGHT

log = structlog.get_logger("penpay.sagas")

SAGA_GROUP = "payment-saga"
# penpay.mpesa: where the adapter's own outbox rows went (old names below); nothing new is written there.
SAGA_STREAMS = ("penpay.payments", "penpay.mpesa")

# Events after which a transaction may have something to do now. The aggregate's own carry the
# version they made (the saga skips one it already read and decided on); the old names do not.
VERSIONED_WAKE_UPS = frozenset(
    event.event_type
    for event in (
        DepositInitiated,
        TransactionStatusChanged,
        # The aggregate's, on stream penpay.payments: an STK callback or a B2C result recorded
        MpesaCallbackReceived,
        MpesaDisbursementOutcomeUnknown,  # B2C queue timeout
        MpesaDisbursementCompleted,  # Transaction Status confirmed the payout
        MpesaDisbursementFailed,  # Transaction Status: the payout was not made
        RefundRequested,
        ReviewRetryApproved,
    )
)
WAKE_UPS = (
    *sorted(VERSIONED_WAKE_UPS),
    # The adapter's old names (stream penpay.mpesa), from before the aggregate wrote the evidence:
    # outbox rows a relay had not published yet are renamed by migration 0025, but messages already
    # in the Redis streams (pending, or re-delivered) keep them, so they still wake the saga. No
    # class carries them any more: they are names on the wire only.
    "MpesaStkCallbackRecorded",
    "MpesaB2CResultRecorded",
    "MpesaB2COutcomeUnknown",
    "MpesaB2CConfirmed",
)


def saga_consumer(
    bus: MessageBus, engine: AsyncEngine, saga: SagaRunner, *, clock: Clock | None = None, **options: Any
) -> EventConsumer:
    consumer = EventConsumer(bus, engine, group=SAGA_GROUP, streams=SAGA_STREAMS, clock=clock, **options)

    async def wake(event: EventEnvelope) -> None:
        data = event.data()
        if data.get("moved_on"):
            return  # its commit moved the transaction on: that later state's own event decides
        if event.event_type == TransactionStatusChanged.event_type and not wakes_the_saga(data):
            return
        if event.event_type == DepositInitiated.event_type and data.get("pushed_by_initiator"):
            return  # its InitiateDeposit sends the push; a lost answer is the sweeper's after the grace
        # Its version, when the aggregate wrote it: a wake-up about a version this process
        # already decided on (the saga's own step, or one it is taking now) reads nothing.
        version = event.aggregate_version if event.event_type in VERSIONED_WAKE_UPS else None
        await saga.advance(TransactionId.from_str(event.aggregate_id), version=version)

    for event_type in WAKE_UPS:
        consumer.register_standalone(event_type, wake, inbox=False)  # a repeated look is harmless
    return consumer


def wakes_the_saga(status_change: Mapping[str, Any]) -> bool:
    """A status change into a state where a fresh transaction has nothing to do, only evidence
    (whose own events wake the saga) or time (the sweeper) moving it, wakes nothing: most status
    changes are the saga's own, and looking again after each doubled its reads."""
    return str(status_change.get("to_status")) not in QUIET_STATUSES


_WAITING_FOR_EVIDENCE_OR_TIME = (
    TransactionStatus.NEEDS_REVIEW,
    TransactionStatus.AWAITING_MPESA,
    TransactionStatus.AWAITING_WITHDRAWAL_CODE,
    TransactionStatus.DERIV_TRANSFER_SENT,
    TransactionStatus.MPESA_DISBURSEMENT_SENT,
)
# Only the saga's own credit enters MPESA_CONFIRMED, and it goes straight on from the state it
# committed (the transfer's intent in the same commit, or a float wait the sweeper retries).
ENTERED_ONLY_BY_THE_SAGA = frozenset({TransactionStatus.MPESA_CONFIRMED.value})
QUIET_STATUSES = ENTERED_ONLY_BY_THE_SAGA | frozenset(
    s.value for s in TransactionStatus if s.is_terminal or s in _WAITING_FOR_EVIDENCE_OR_TIME
)


async def report_in_flight(engine: AsyncEngine, now: datetime) -> None:
    """Set the in-flight gauges from one grouped read: every (type, status), 0 where none waits."""
    found = {(f.type, f.status): f for f in await in_flight(engine)}
    for type_ in TransactionType:
        for status in IN_FLIGHT_STATUSES:
            f = found.get((type_.value, status))
            IN_FLIGHT.labels(type_.value, status).set(f.count if f else 0)
            age = (now - f.oldest_created_at).total_seconds() if f else 0.0
            OLDEST_IN_FLIGHT.labels(type_.value, status).set(max(0.0, age))


class Sweeper:
    """Looks again at transactions no event has moved for `min_age`.

    A transaction the saga left waiting is not read again on every sweep: advance() says when time
    alone will give it something to do (decisions.next_due), and the sweeper skips it until then,
    unless it changed meanwhile, and never for longer than `max_quiet` (the bound on how late a
    change that came with no event, e.g. evidence whose wake-up was lost, is noticed). The saga
    writes that time with the transaction it leaves waiting (transactions.saga_due_at), so no
    sweeper of any worker reads it before then, not even once to learn it. Without
    that, every sweep re-read every waiting transaction: under load the sweeper took most of the
    workers' CPU, which made transactions wait longer, which gave it more to re-read.

    A transaction saved without the saga's word (saga_due_at NULL) has an owner: the event that save
    wrote, or the advance that goes on from it. The sweeper leaves it to that owner for `event_grace`
    (at least min_age): looking sooner, under load, met the owner's advance (its row locked, or its
    work done), an empty locked read and a rollback each time.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        saga: SagaRunner,
        *,
        min_age: timedelta = timedelta(seconds=5),
        interval: float = 5.0,
        batch: int = 200,
        concurrency: int = 8,
        max_quiet: timedelta = timedelta(seconds=30),
        event_grace: timedelta | None = None,
        report_every: timedelta = timedelta(seconds=30),
        clock: Clock | None = None,
        queue_delay: Callable[[], timedelta] | None = None,
    ) -> None:
        self._engine = engine
        self._saga = saga
        self.min_age = min_age
        # How long an event waits now before its handler runs (the worker's consumer): a
        # transaction younger than that may well have its event still queued, so it is not
        # taken as unowned. A saturated worker's sweeper advanced the queued ones itself, and
        # their events then met the work done: reads and rollbacks for nothing (issue 19).
        self._queue_delay = queue_delay or (lambda: timedelta(0))
        # How long a transaction saved without the saga's word is left to the event that save wrote
        # (or to the advance that goes on from it) before a sweeper takes it as unowned: under load
        # a sweeper that looked sooner met its owner's advance, and found it locked or done.
        self.event_grace = max(min_age, event_grace if event_grace is not None else min_age)
        self.interval = interval
        self.batch = batch
        self.max_quiet = max_quiet
        self.report_every = report_every
        self._reported_at: datetime | None = None
        self._clock = clock or SystemClock()
        self._limit = asyncio.Semaphore(concurrency)
        self._position: SweepPosition | None = None
        # transaction -> (its updated_at when the saga left it waiting, when to look again)
        self._quiet: dict[TransactionId, tuple[datetime, datetime]] = {}

    async def sweep_once(self) -> int:
        """Advance the next `batch` transactions untouched for min_age (each sweep carries on where
        the last stopped, and starts again from the oldest after the end), skipping those still
        quiet; returns how many were advanced."""
        now = self._clock.now()
        # at most max_quiet: a handler stuck on a slow call must not keep this sweeper off for longer
        queued = min(self._queue_delay(), self.max_quiet)
        found, self._position = await stale_transaction_ids(
            self._engine,
            untouched_since=now - max(self.min_age, queued),
            limit=self.batch,
            after=self._position,
            # what the saga said has nothing to do before a later time is not read to find it waiting
            now=now,
            quiet_since=now - self.max_quiet,
            # what the saga saved without a word is its owner's (an event, a running advance) a while
            unclaimed_since=now - max(self.event_grace, queued),
        )
        due = [tx_id for tx_id, updated_at in found if not self._still_quiet(tx_id, updated_at, now)]

        async def one(tx_id: TransactionId) -> None:
            async with self._limit:
                try:
                    # One owner at a time: what an event's advance (here, or in another worker
                    # holding its row) is moving is left to it, not waited for.
                    advanced = await self._saga.advance(tx_id, if_idle=True)
                except Exception as exc:  # one bad transaction must not stop the sweep
                    log.warning("sweeper.advance_failed", transaction_id=str(tx_id), **failure_fields(exc))
                    return
            if advanced.waiting is not None:
                latest = self._clock.now() + self.max_quiet
                due_at = next_due(advanced.waiting, self._saga.policy)
                until = latest if due_at is None else min(due_at, latest)
                self._quiet[tx_id] = (advanced.waiting.updated_at, until)

        await asyncio.gather(*(one(tx_id) for tx_id in due))
        if self._position is None:  # a full round: forget what is gone or due anyway
            self._quiet = {k: v for k, v in self._quiet.items() if v[1] > now}
        return len(due)

    async def _report_when_due(self) -> None:
        now = self._clock.now()
        if self._reported_at is not None and now - self._reported_at < self.report_every:
            return
        self._reported_at = now
        try:
            await report_in_flight(self._engine, now)
        except Exception as exc:  # the gauges go stale; the sweeping goes on
            log.warning("sweeper.report_failed", error=type(exc).__name__)

    def _still_quiet(self, tx_id: TransactionId, updated_at: datetime, now: datetime) -> bool:
        quiet = self._quiet.get(tx_id)
        return quiet is not None and quiet[0] == updated_at and now < quiet[1]

    async def run(self, stop: asyncio.Event) -> None:
        log.info("sweeper.started", interval=self.interval, min_age=self.min_age.total_seconds())
        while not stop.is_set():
            try:
                await self.sweep_once()
            except Exception as exc:
                log.warning("sweeper.failed", error=type(exc).__name__)
            await self._report_when_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
        log.info("sweeper.stopped")

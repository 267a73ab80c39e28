"""EventConsumer: the runtime a saga (or any event handler) plugs into.

    consumer = EventConsumer(bus, engine, group="deposit-saga", streams=["penpay.payments"])

    @consumer.handler("DepositPaid")
    async def on_deposit_paid(event: EventEnvelope, uow: SqlUnitOfWork) -> None:
        ...  # read/write through uow; record new events with uow.track/record_events

    await consumer.run(stop)          # or process_once() in tests

For each delivered message the runtime:

1. opens a SqlUnitOfWork and inserts the inbox row (group, event id) into `processed_events`;
   if the row exists the event was already handled: roll back, ack, done (effectively once);
2. calls the handler, then commits (the handler never commits), then XACKs: once per stream
   for the messages settled together (one round trip, not one per message; a crash
   before it leaves them pending, and their redelivery meets the inbox). `run()` reads on while
   handlers run; `process_once()` (tests) handles one batch to the end.

A batch handler (`register_batch`) takes the events of its type one read returns together: one
unit of work, an inbox row each, one call with those not handled before, one commit; an event it
reports failed has its inbox row taken back and comes back as any failure does. (`linger_ms`
makes `run()` wait between reads that found less than a batch, so that more events share a commit.)

A crash after the commit and before the ack leaves the message pending; another consumer
claims it after `claim_idle_ms` (XAUTOCLAIM, tried at most every `claim_idle_ms / 2`: nothing
can be claimable sooner) and the inbox turns it into a no-op. A handler
that raises rolls everything back and leaves the message pending: it is redelivered after
`claim_idle_ms`, and on its `max_deliveries`-th failed delivery it goes to `<stream>.dead`
(counted in `penpay_dead_letters_total{stream,group}`); `penpay dead-letters replay` puts it
back. A message delivered more than `max_deliveries` times without an ack (its consumer keeps
dying) is dead-lettered without running the handler again.

`claim_idle_ms` must exceed the longest run of a handler (and of a batch, in process_once: its
acks wait for its last handler): a message still unacknowledged when it is claimed runs twice,
perhaps concurrently; the inbox key makes one of them a no-op, but side effects outside the
database transaction (calls to Deriv, M-Pesa) are the saga's to make idempotent, e.g. by
committing its intent first and calling out in a later step.

Order: a consumer group does not preserve per-aggregate order (several consumers, claims,
replays). Handlers check the aggregate's stored version/state against
`event.aggregate_version` and ignore stale events instead of applying them.

The group name is also the inbox's consumer name (at most 64 characters): every process of
one group shares one inbox; `consumer` names the process inside the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from application.errors import failure_fields
from domain.shared.clock import Clock, SystemClock
from persistence import inbox
from persistence.unit_of_work import SqlUnitOfWork
from security.pii import PiiCipher
from workers import metrics
from workers.bus import Delivery, MessageBus
from workers.envelope import EventEnvelope, MalformedMessage

log = structlog.get_logger("penpay.consumer")

Handler = Callable[[EventEnvelope, SqlUnitOfWork], Awaitable[None]]
# A handler that opens its own transactions (a saga step that calls out between commits) and
# is idempotent by itself; the inbox row is written after it returns.
StandaloneHandler = Callable[[EventEnvelope], Awaitable[None]]
# A handler of the events one read returned, in one unit of work (register_batch): the events
# that failed, each with its failure (KeepAndRetry: what it wrote stands).
BatchHandler = Callable[[Sequence[EventEnvelope], SqlUnitOfWork], Awaitable[Mapping[uuid.UUID, Exception]]]
ANY_EVENT = "*"


class KeepAndRetry(Exception):
    """Raised by a handler whose work so far must stand although the event is not done (a notice
    sent by one channel, the other failed): the consumer commits the unit of work without the
    inbox row and leaves the message to come back, as for any failure (`cause`, the failure)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.cause = cause


# Outcomes whose message is acknowledged after the batch ("dead" was acked by the dead letter).
_TO_ACK = frozenset({"handled", "duplicate", "ignored"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one delivery (for tests and logs)."""

    status: str  # handled | duplicate | ignored | retry | dead | unacked
    message_id: str
    event_id: str | None = None


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class EventConsumer:
    def __init__(
        self,
        bus: MessageBus,
        engine: AsyncEngine,
        *,
        group: str,
        streams: Sequence[str],
        consumer: str | None = None,
        max_deliveries: int = 5,
        claim_idle_ms: int = 60_000,
        batch_size: int = 10,
        max_in_flight: int | None = None,
        block_ms: int = 1_000,
        linger_ms: int = 0,
        clock: Clock | None = None,
        uow_factory: Callable[[], SqlUnitOfWork] | None = None,
        cipher: PiiCipher | None = None,
    ) -> None:
        if len(group) > 64:
            raise ValueError("the group name is the inbox consumer name: at most 64 characters")
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self._bus = bus
        self.group = group
        self.streams = list(streams)
        self.consumer = consumer or default_consumer_name()
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = claim_idle_ms
        self.batch_size = batch_size
        # run(): messages handled at once (each holds a database connection while it runs)
        self.max_in_flight = max_in_flight or 2 * batch_size
        self.block_ms = block_ms
        # run(): after a read that did not fill a batch, wait this long before the next (events
        # that share a commit: register_batch), at the price of that much delay
        self.linger_ms = linger_ms
        self._clock = clock or SystemClock()
        self._uow_factory = uow_factory or (
            # `cipher`: the deployment's PII keys, for handlers that read users (None: the
            # development key, which cannot read what production wrote).
            lambda: SqlUnitOfWork(engine, clock=self._clock, actor=f"worker:{group}", cipher=cipher)
        )
        self._handlers: dict[str, Handler] = {}
        self._standalone: dict[str, StandaloneHandler] = {}
        self._batched: dict[str, BatchHandler] = {}
        self._without_inbox: set[str] = set()
        self._wants: dict[str, Callable[[EventEnvelope], bool]] = {}
        self._started = False
        self._next_claim = 0.0  # time.monotonic() from which XAUTOCLAIM is worth a round trip again
        self._running: dict[str, asyncio.Task[Any]] = {}  # run()'s: message id -> its handling

    # --- registration -------------------------------------------------------------------

    def register(
        self, event_type: str, handler: Handler, *, wants: Callable[[EventEnvelope], bool] | None = None
    ) -> None:
        """Handle events of `event_type` (or every event: "*"). One handler per type.
        `wants`: judged on the event alone; one it turns down is acknowledged at once, without the
        inbox's row and commit (the handler would have done nothing with it)."""
        self._claim(event_type)
        self._handlers[event_type] = handler
        if wants is not None:
            self._wants[event_type] = wants

    def register_batch(
        self, event_type: str, handler: BatchHandler, *, wants: Callable[[EventEnvelope], bool] | None = None
    ) -> None:
        """Handle the events of `event_type` one read returns together, in one unit of work: one
        inbox row each, one call of `handler` with those not handled before, one commit (not one
        per event). The handler returns the events that failed: their inbox rows are taken back and
        they come back as any failure does; a failure other than KeepAndRetry must have written
        nothing. A crash before the commit repeats the batch's effects outside the database (a
        notice: sent again, never lost). `wants`: as for register."""
        self._claim(event_type)
        self._batched[event_type] = handler
        if wants is not None:
            self._wants[event_type] = wants

    def _claim(self, event_type: str) -> None:
        if event_type in self._handlers or event_type in self._standalone or event_type in self._batched:
            raise ValueError(f"{event_type} already has a handler in group {self.group}")

    def register_standalone(self, event_type: str, handler: StandaloneHandler, *, inbox: bool = True) -> None:
        """Handle `event_type` with a handler that commits its own work and is idempotent by
        itself (re-running it after a crash is harmless). It runs outside the inbox's
        transaction, so it may commit several times and call out between commits (SQLite has
        one writer: holding the inbox transaction open would block the handler's own).
        inbox=False: the handler only looks again at what the event names (a saga wake-up), so
        a repeat costs one look and nothing else; the inbox's read and write would cost more."""
        self._claim(event_type)
        self._standalone[event_type] = handler
        if not inbox:
            self._without_inbox.add(event_type)

    def handler(self, *event_types: str) -> Callable[[Handler], Handler]:
        def decorate(fn: Handler) -> Handler:
            for event_type in event_types or (ANY_EVENT,):
                self.register(event_type, fn)
            return fn

        return decorate

    # --- the loop -----------------------------------------------------------------------

    async def start(self) -> None:
        for stream in self.streams:
            await self._bus.ensure_group(stream, self.group)
        self._started = True

    async def process_once(self) -> list[Outcome]:
        """Claim stale messages, read new ones (waiting up to block_ms), handle them all."""
        if not self._started:
            await self.start()
        deliveries = await self._fetch_or_regroup(self.batch_size)
        together = [d for d in deliveries if self._is_batched(d)]
        # Messages of one aggregate are handled in order; different aggregates concurrently.
        by_aggregate: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            if not self._is_batched(delivery):
                by_aggregate.setdefault(_key(delivery), []).append(delivery)

        async def in_order(group: list[Delivery]) -> list[tuple[Delivery, Outcome]]:
            return [(delivery, await self._settle(delivery)) for delivery in group]

        results = await asyncio.gather(*(in_order(group) for group in by_aggregate.values()))
        settled = [pair for group in results for pair in group]
        if together:  # after the others: one of them may be an earlier message of the same aggregate
            settled += await self._settle_together(together)
        return await self._ack_batch(settled)

    def _is_batched(self, delivery: Delivery) -> bool:
        return bool(self._batched) and delivery.fields.get("event_type") in self._batched

    async def _fetch_or_regroup(self, count: int) -> list[Delivery]:
        if not self._started:
            await self.start()
        try:
            return await self._fetch(count)
        except Exception as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The bus lost the stream and its group (a Redis restarted without persistence): make
            # them again and read on; otherwise this consumer failed until its process restarted.
            log.warning("consumer.group_lost", group=self.group, streams=self.streams)
            await self.start()
            return await self._fetch(count)

    async def _fetch(self, count: int) -> list[Delivery]:
        """Stale messages claimed (when due), then new ones read (waiting up to block_ms)."""
        deliveries: list[Delivery] = []
        if self._claim_due():
            for stream in self.streams:
                deliveries += await self._bus.claim_stale(
                    stream, self.group, self.consumer, min_idle_ms=self.claim_idle_ms, count=count
                )
        deliveries += await self._bus.read(
            self.streams,
            self.group,
            self.consumer,
            count=count,
            block_ms=0 if deliveries else self.block_ms,
        )
        return deliveries

    def _claim_due(self) -> bool:
        """A message becomes claimable `claim_idle_ms` after its delivery: looking twice per that
        period bounds the delay at half of it and spares the round trip on every other pass."""
        now = time.monotonic()
        if now < self._next_claim:
            return False
        self._next_claim = now + self.claim_idle_ms / 2000
        return True

    async def _ack_batch(self, settled: list[tuple[Delivery, Outcome]]) -> list[Outcome]:
        """One XACK per stream for every message settled in the batch (after its commit)."""
        by_stream: dict[str, list[str]] = {}
        for delivery, outcome in settled:
            if outcome.status in _TO_ACK:
                by_stream.setdefault(delivery.stream, []).append(delivery.message_id)
        failed: set[str] = set()
        for stream, message_ids in by_stream.items():
            try:
                await self._bus.ack(stream, self.group, *message_ids)
            except Exception as exc:
                # The effects are committed; the messages stay pending and their redelivery is a no-op.
                log.warning(
                    "event.ack_failed",
                    stream=stream,
                    group=self.group,
                    messages=len(message_ids),
                    error=type(exc).__name__,
                )
                failed.add(stream)
        return [
            Outcome("unacked", o.message_id, o.event_id) if d.stream in failed and o.status in _TO_ACK else o
            for d, o in settled
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Read on while handlers run. Reading a batch and waiting for all of it (process_once) held
        every message behind the batch's slowest handler: a saga's wake-up waited 1-2 s in Redis
        behind other transactions' calls to M-Pesa and Deriv. Here a message waits only for the
        earlier messages of its own aggregate (handled in order); at most `max_in_flight` are
        handled at once; the messages settled in one turn of the loop are acknowledged together
        (one XACK per stream). On stop, what is running is finished and acknowledged."""
        log.info("consumer.started", group=self.group, consumer=self.consumer, streams=self.streams)
        running = self._running  # message id -> its handling
        newest: dict[str, asyncio.Task[Any]] = {}  # aggregate -> its latest handling
        settled: list[tuple[Delivery, Outcome]] = []
        acking: list[asyncio.Task[None]] = []

        async def acknowledge() -> None:
            batch = settled[:]
            settled.clear()
            await self._ack_batch(batch)

        def done(deliveries: list[Delivery], task: asyncio.Future[list[tuple[Delivery, Outcome]]]) -> None:
            for delivery in deliveries:
                running.pop(delivery.message_id, None)
                key = _key(delivery)
                if newest.get(key) is task:
                    del newest[key]
            if task.cancelled():
                return
            error = task.exception()
            if error is not None:  # left pending: redelivered after claim_idle_ms
                log.warning("event.failed", group=self.group, **failure_fields(error))
                return
            first_of_turn = not settled
            settled.extend(task.result())
            if first_of_turn:  # acknowledge them all once this turn ends
                acking.append(asyncio.create_task(acknowledge()))
                acking[:] = [t for t in acking if not t.done()]

        async def after(
            previous: list[asyncio.Task[Any]], deliveries: list[Delivery]
        ) -> list[tuple[Delivery, Outcome]]:
            if previous:
                await asyncio.wait(previous)  # their outcomes are their own; ours come after them
            if len(deliveries) == 1 and not self._is_batched(deliveries[0]):
                return [(deliveries[0], await self._settle(deliveries[0]))]
            return await self._settle_together(deliveries)

        def start(deliveries: list[Delivery]) -> None:
            keys = {_key(delivery) for delivery in deliveries}
            previous = [newest[key] for key in keys if key in newest]
            task = asyncio.create_task(after(previous, deliveries))
            for delivery in deliveries:
                running[delivery.message_id] = task
            for key in keys:
                newest[key] = task
            task.add_done_callback(functools.partial(done, deliveries))

        delay = 0.0
        try:
            while not stop.is_set():
                free = self.max_in_flight - len(running)
                if free <= 0:
                    await asyncio.wait(list(running.values()), return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    deliveries = await self._fetch_or_regroup(min(free, self.batch_size))
                    delay = 0.0
                except Exception as exc:
                    delay = min(max(delay * 2, 0.5), 30.0)
                    log.warning("consumer.failed", group=self.group, error=type(exc).__name__, retry_in=delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    continue
                # claimed back while still being handled here: left to that handling
                fresh = [d for d in deliveries if d.message_id not in running]
                together = [d for d in fresh if self._is_batched(d)]
                for delivery in fresh:
                    if not self._is_batched(delivery):
                        start([delivery])
                if together:
                    start(together)
                if self.linger_ms and len(deliveries) < self.batch_size:
                    # a batch handler's next read waits a while: more events share its commit
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.linger_ms / 1000)
        finally:
            if running:
                await asyncio.wait(list(running.values()))
            await asyncio.gather(*acking, return_exceptions=True)
            if settled:
                await acknowledge()
        log.info("consumer.stopped", group=self.group, consumer=self.consumer)

    def queue_delay(self) -> timedelta:
        """How long the oldest message run() is handling now waited since it was written (its
        stream id's milliseconds; the clock's, as the bus stamps them): what an event written now
        may wait before its handler runs. Zero when nothing is being handled."""
        stamps = [_written_ms(message_id) for message_id in self._running]
        oldest = min((ms for ms in stamps if ms is not None), default=None)
        if oldest is None:
            return timedelta(0)
        waited = self._clock.now().timestamp() * 1000 - oldest
        return timedelta(milliseconds=max(waited, 0.0))

    # --- one delivery -------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> Outcome:
        """Handle one delivery and acknowledge it (process_once acknowledges its batch at once)."""
        return (await self._ack_batch([(delivery, await self._settle(delivery))]))[0]

    async def _taken(self, delivery: Delivery) -> EventEnvelope | Outcome:
        """The delivery's event, or what became of a delivery that is not handled: dead-lettered
        (malformed, or delivered too often) or ignored (no handler wants it)."""
        try:
            event = EventEnvelope.from_fields(delivery.fields)
        except MalformedMessage as exc:
            await self._dead_letter(delivery, None, str(exc))
            return Outcome("dead", delivery.message_id)
        if delivery.delivery_count > self.max_deliveries:
            error = f"delivered {delivery.delivery_count} times without an acknowledgement"
            await self._dead_letter(delivery, event, error)
            return Outcome("dead", delivery.message_id, str(event.event_id))
        if event.event_type in self._standalone:
            return event
        known = event.event_type in self._handlers or event.event_type in self._batched
        handled = known or ANY_EVENT in self._handlers
        wants = self._wants.get(event.event_type if known else ANY_EVENT)
        if not handled or (wants is not None and not wants(event)):
            return Outcome("ignored", delivery.message_id, str(event.event_id))
        return event

    async def _settle(self, delivery: Delivery) -> Outcome:
        """Handle one delivery; its acknowledgement is the caller's (see _TO_ACK)."""
        if self._is_batched(delivery):  # a batch of one (the callers split batches off)
            return (await self._settle_together([delivery]))[0][1]
        event = await self._taken(delivery)
        if isinstance(event, Outcome):
            return event
        standalone = self._standalone.get(event.event_type)
        if standalone is not None:
            return await self._handle_standalone(delivery, event, standalone, self._context(delivery, event))
        handler = self._handlers.get(event.event_type) or self._handlers[ANY_EVENT]
        try:
            async with self._uow_factory() as uow:
                first = await inbox.record_processed(
                    uow.connection, self.group, event.event_id, uow.clock.now()
                )
                if first:
                    try:
                        await handler(event, uow)
                    except KeepAndRetry as partly:
                        await inbox.forget(uow.connection, self.group, event.event_id)
                        await uow.commit()
                        raise partly.cause from None
                    await uow.commit()
        except Exception as exc:
            return await self._failed(delivery, event, exc)
        return self._handled(delivery, event) if first else self._duplicate(delivery, event)

    async def _settle_together(self, deliveries: list[Delivery]) -> list[tuple[Delivery, Outcome]]:
        """Deliveries of batch handlers' events (register_batch), in one unit of work and one commit.
        Nothing committed (the commit or a statement failed): every one of them comes back."""
        settled: list[tuple[Delivery, Outcome]] = []
        taken: list[tuple[Delivery, EventEnvelope]] = []
        for delivery in deliveries:
            event = await self._taken(delivery)
            if isinstance(event, Outcome):
                settled.append((delivery, event))
            else:
                taken.append((delivery, event))
        if not taken:
            return settled
        fresh: list[tuple[Delivery, EventEnvelope]] = []
        failed: Mapping[uuid.UUID, Exception] = {}
        try:
            async with self._uow_factory() as uow:
                for delivery, event in taken:
                    now = uow.clock.now()
                    if await inbox.record_processed(uow.connection, self.group, event.event_id, now):
                        fresh.append((delivery, event))
                by_type: dict[str, list[EventEnvelope]] = {}
                for _, event in fresh:
                    by_type.setdefault(event.event_type, []).append(event)
                failed = {}
                for event_type, events in by_type.items():
                    failed = {**failed, **await self._batched[event_type](events, uow)}
                for event_id in failed:
                    await inbox.forget(uow.connection, self.group, event_id)
                await uow.commit()
        except Exception as exc:
            return settled + [(d, await self._failed(d, e, exc)) for d, e in taken]
        firsts = {id(delivery) for delivery, _ in fresh}
        for delivery, event in taken:
            failure = failed.get(event.event_id)
            if failure is not None:
                cause = failure.cause if isinstance(failure, KeepAndRetry) else failure
                settled.append((delivery, await self._failed(delivery, event, cause)))
            elif id(delivery) in firsts:
                settled.append((delivery, self._handled(delivery, event)))
            else:
                settled.append((delivery, self._duplicate(delivery, event)))
        return settled

    async def _failed(self, delivery: Delivery, event: EventEnvelope, exc: Exception) -> Outcome:
        """A failed handling: left pending (redelivered after claim_idle_ms), or dead-lettered on its
        `max_deliveries`-th delivery."""
        event_id = str(event.event_id)
        metrics.HANDLER_FAILURES.labels(stream=delivery.stream, group=self.group).inc()
        if delivery.delivery_count >= self.max_deliveries:
            await self._dead_letter(delivery, event, f"{type(exc).__name__}: {exc}")
            return Outcome("dead", delivery.message_id, event_id)
        log.warning("event.failed", **self._context(delivery, event), **failure_fields(exc))
        return Outcome("retry", delivery.message_id, event_id)

    def _handled(self, delivery: Delivery, event: EventEnvelope) -> Outcome:
        labels = {"stream": delivery.stream, "group": self.group, "event_type": event.event_type}
        metrics.EVENTS_HANDLED.labels(**labels).inc()
        log.info("event.handled", **self._context(delivery, event))
        return Outcome("handled", delivery.message_id, str(event.event_id))

    def _duplicate(self, delivery: Delivery, event: EventEnvelope) -> Outcome:
        metrics.DUPLICATES_SKIPPED.labels(stream=delivery.stream, group=self.group).inc()
        log.info("event.duplicate", **self._context(delivery, event))
        return Outcome("duplicate", delivery.message_id, str(event.event_id))

    def _context(self, delivery: Delivery, event: EventEnvelope) -> dict[str, object]:
        """What the logs say about a delivery (built only for one that is handled: most are not)."""
        return {
            **event.log_context(),
            "stream": delivery.stream,
            "group": self.group,
            "message_id": delivery.message_id,
            "delivery": delivery.delivery_count,
        }

    async def _handle_standalone(
        self,
        delivery: Delivery,
        event: EventEnvelope,
        handler: StandaloneHandler,
        context: dict[str, object],
    ) -> Outcome:
        event_id = str(event.event_id)
        remembered = event.event_type not in self._without_inbox
        try:
            seen = False
            if remembered:
                async with self._uow_factory() as uow:
                    seen = await inbox.was_processed(uow.connection, self.group, event.event_id)
            if not seen:
                await handler(event)
            if not seen and remembered:
                async with self._uow_factory() as uow:
                    # False: a concurrent delivery finished first; both runs were harmless.
                    await inbox.record_processed(uow.connection, self.group, event.event_id, uow.clock.now())
                    await uow.commit()
        except Exception as exc:
            metrics.HANDLER_FAILURES.labels(stream=delivery.stream, group=self.group).inc()
            if delivery.delivery_count >= self.max_deliveries:
                await self._dead_letter(delivery, event, f"{type(exc).__name__}: {exc}")
                return Outcome("dead", delivery.message_id, event_id)
            log.warning("event.failed", **context, **failure_fields(exc))
            return Outcome("retry", delivery.message_id, event_id)
        if seen:
            metrics.DUPLICATES_SKIPPED.labels(stream=delivery.stream, group=self.group).inc()
            return Outcome("duplicate", delivery.message_id, event_id)
        metrics.EVENTS_HANDLED.labels(
            stream=delivery.stream, group=self.group, event_type=event.event_type
        ).inc()
        return Outcome("handled", delivery.message_id, event_id)

    async def _dead_letter(self, delivery: Delivery, event: EventEnvelope | None, error: str) -> None:
        dead_id = await self._bus.dead_letter(delivery, group=self.group, consumer=self.consumer, error=error)
        metrics.DEAD_LETTERS.labels(stream=delivery.stream, group=self.group).inc()
        log.error(
            "event.dead_lettered",
            **(event.log_context() if event else {}),
            stream=delivery.stream,
            group=self.group,
            message_id=delivery.message_id,
            dead_id=dead_id,
            deliveries=delivery.delivery_count,
        )


def _key(delivery: Delivery) -> str:
    """The aggregate a message is about: its messages are handled in order (else its own id)."""
    return str(delivery.fields.get("aggregate_id") or delivery.message_id)


def _written_ms(message_id: str) -> int | None:
    """A stream id's time part (`<ms>-<seq>`), or None for an id of another form."""
    head, _, _ = message_id.partition("-")
    return int(head) if head.isdigit() else None

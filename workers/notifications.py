"""Payment notices by SMS and email: one consumer of the outbox's status changes, off the saga's path.

One consumer group ("payment-notices") sends both channels of a final status change, and the final
status changes one read returns share one transaction (EventConsumer.register_batch): their inbox
rows, one read of the facts each, the notices sent together, the audit records of what went out,
one commit (one per notice cost a commit per payment; the consumer waits `linger_ms` between reads
that find less than a batch, so that under load several share it). A notice is sent inside that
transaction, so an event delivered twice (redelivery, claim, replay) finds the inbox row and sends
nothing. The channels stay independent: when one
fails after the other went out, what went out is committed with each sent channel's marker (an
inbox row under the channel's name) and without the group's inbox row (KeepAndRetry), and the
event comes back after `claim_idle_ms`, when the read sees the markers and only the failed channel
is tried again; after `max_deliveries` it is dead-lettered (`penpay dead-letters`). The one window
left is a crash after a provider took a message and before the commit: the batch's notices are
sent again (providers take no idempotency key), never lost. A recipient over its rate limit is skipped
(logged): a notice is worth less than a flood.

Until 2026-12 each channel had a group of its own, "payment-notice-sms" and "payment-notice-email",
whose inbox rows are exactly those markers: the new group, created at the stream's start, reads the
retained status changes once and sends nothing the old groups sent. (Two groups cost a deposit two
inbox rows, two audit inserts and two commits.) Stop the old workers before starting the new ones.

The saga never waits for any of this: it only writes its events; this group reads them later.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from application.identity.errors import RateLimited
from application.identity.ports import Notifier
from application.notifications.payment_notices import NoticeFacts, PaymentNotice, notice_for
from domain.payments.status import TransactionStatus
from domain.shared.clock import Clock, SystemClock
from domain.shared.ids import TransactionId
from persistence import inbox
from persistence.audit_sealer import sealed_in_background, sealer_for
from persistence.payment_notice_reads import NoticeRead, notice_facts
from persistence.unit_of_work import SqlUnitOfWork
from security.pii import PiiCipher
from workers.bus import MessageBus
from workers.consumer import BatchHandler, EventConsumer, KeepAndRetry
from workers.envelope import EventEnvelope

log = structlog.get_logger("penpay.notices")

NOTICE_STREAMS = ("penpay.payments",)
NOTICE_GROUP = "payment-notices"
# Each channel's "sent" marker: an inbox row under this name (the groups' names before one group).
SENT_MARKERS = {"sms": "payment-notice-sms", "email": "payment-notice-email"}
_REACHED = frozenset({TransactionStatus.COMPLETED, TransactionStatus.FAILED, TransactionStatus.REVERSED})


def notification_consumers(
    bus: MessageBus,
    engine: AsyncEngine,
    notifier: Notifier,
    *,
    cipher: PiiCipher | None,
    channels: Sequence[str] = ("sms", "email"),
    clock: Clock | None = None,
    seal_delay: float = 1.0,
    **options: Any,
) -> list[EventConsumer]:
    clock = clock or SystemClock()
    units = _units_of_work(engine, clock, cipher)
    # Most of the stream is status changes that make no notice, acknowledged unread: a larger
    # batch reads and acknowledges a relay's burst in a few round trips instead of one per ten.
    options.setdefault("batch_size", 50)
    # Notices wait a little between reads that find fewer than a batch: the final status changes
    # a read returns share one commit (one per notice cost a commit per payment).
    options.setdefault("linger_ms", 200)
    consumer = EventConsumer(
        bus, engine, group=NOTICE_GROUP, streams=NOTICE_STREAMS, clock=clock, uow_factory=units, **options
    )
    # Only a final status makes a notice: the others are acknowledged without an inbox row.
    handler = _handler(tuple(channels), notifier, DeferredSeal(engine, delay=seal_delay))
    consumer.register_batch("TransactionStatusChanged", handler, wants=_reaches_final)
    return [consumer]


def _units_of_work(
    engine: AsyncEngine, clock: Clock, cipher: PiiCipher | None
) -> Callable[[], SqlUnitOfWork]:
    # No seal per notice: its audit record is committed with the inbox row, and DeferredSeal
    # chains it later (usually another process's seal has taken it by then).
    actor = f"worker:{NOTICE_GROUP}"
    return lambda: SqlUnitOfWork(engine, clock=clock, actor=actor, cipher=cipher, seal_here=False)


class DeferredSeal:
    """One audit seal `delay` seconds after the first notice that asked for one, for every notice
    committed until then. A notice is the last record of its payment, and nothing waits for it in
    the chain: sealed inline, each cost the notice worker a head lock and six statements; under load
    the saga workers' seals (which take every pending record) have chained it before this one runs,
    and it finds nothing. Idle, it chains what the notices left. A process stopped before it fires
    leaves its records committed in audit_pending for the next seal of any process."""

    def __init__(self, engine: AsyncEngine, *, delay: float = 1.0) -> None:
        self._engine, self._delay = engine, delay
        self._timer: asyncio.TimerHandle | None = None

    def request(self) -> None:
        if sealed_in_background(self._engine):
            return  # the audit daemon's sealer chains them
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        sealer_for(self._engine).seal_soon()


def _reaches_final(event: EventEnvelope) -> bool:
    try:
        return TransactionStatus(str(event.data().get("to_status"))) in _REACHED
    except ValueError:
        return False


def _handler(channels: tuple[str, ...], notifier: Notifier, seal: DeferredSeal) -> BatchHandler:
    async def handle(events: Sequence[EventEnvelope], uow: SqlUnitOfWork) -> dict[uuid.UUID, Exception]:
        # One narrow read per event (the transaction's facts, the user's contacts, the channels'
        # markers) in the inbox's transaction: the status change carries no contact, and must not.
        work: list[tuple[EventEnvelope, NoticeRead, PaymentNotice]] = []
        for event in events:
            try:
                reached = TransactionStatus(str(event.data().get("to_status")))
            except ValueError:
                continue
            if reached not in _REACHED:
                continue
            tx_id = TransactionId.from_str(event.aggregate_id)
            read = await notice_facts(uow.connection, tx_id, event_id=event.event_id, markers=SENT_MARKERS)
            if read is None:
                log.warning("notice.no_transaction", transaction_id=event.aggregate_id)
                continue
            notice = notice_for(read.facts, reached)
            if notice is not None:
                work.append((event, read, notice))
        # The notices go out together: the batch waits for its slowest provider call, not their sum.
        outcomes = await asyncio.gather(
            *(_send_channels(channels, notifier, read, notice) for _, read, notice in work)
        )
        failed: dict[uuid.UUID, Exception] = {}
        for (event, read, notice), (sent, failure) in zip(work, outcomes, strict=True):
            for channel in sent:
                uow.audit(**_record(channel, notice, read.facts, event))
            if failure is None:
                continue
            if not sent:
                failed[event.event_id] = failure  # nothing written for it: it comes back whole
                continue
            # What went out stands, with each sent channel's marker; the event comes back for the rest.
            for channel in sent:
                await inbox.record_processed(
                    uow.connection, SENT_MARKERS[channel], event.event_id, uow.clock.now()
                )
            failed[event.event_id] = KeepAndRetry(failure)
        if any(sent for sent, _ in outcomes):
            seal.request()  # a rolled-back notice makes it an empty seal, nothing worse
        return failed

    return handle


async def _send_channels(
    channels: tuple[str, ...], notifier: Notifier, read: NoticeRead, notice: PaymentNotice
) -> tuple[list[str], Exception | None]:
    """Each channel not sent before, one after the other: the channels that went out, and the first
    failure (the other channel is still tried; a failed one comes back)."""
    sent: list[str] = []
    failure: Exception | None = None
    for channel in channels:
        if channel in read.sent:
            continue
        try:
            if await _send(channel, notifier, read.facts, notice):
                sent.append(channel)
        except Exception as error:
            failure = failure or error
    return sent, failure


async def _send(channel: str, notifier: Notifier, tx: NoticeFacts, notice: PaymentNotice) -> bool:
    """Send one channel's notice; False when nothing went out (and nothing will)."""
    context = {"transaction_id": str(tx.id), "channel": channel, "notice": notice.kind}
    try:
        if channel == "sms":
            await notifier.send_sms(to=tx.user_phone.e164, body=notice.sms)
        elif tx.email_verified:  # an address nobody proved is theirs gets nothing
            await notifier.send_email(to=tx.user_email.value, subject=notice.subject, body=notice.email)
        else:
            log.info("notice.skipped", **context, reason="email_not_verified")
            return False
    except RateLimited:
        log.warning("notice.suppressed", **context, reason="recipient_rate_limit")
        return False
    log.info("notice.sent", **context)
    return True


def _record(channel: str, notice: PaymentNotice, tx: NoticeFacts, event: EventEnvelope) -> dict[str, Any]:
    return {
        "action": "PaymentNoticeSent",
        "subject_type": "Transaction",
        "subject_id": str(tx.id),
        "details": {"channel": channel, "notice": notice.kind, "event_id": str(event.event_id)},
    }

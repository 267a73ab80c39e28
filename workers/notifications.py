"""Payment notices by SMS and email: consumers of the outbox's status changes, off the saga's path.

One consumer group per channel ("payment-notice-sms", "payment-notice-email"), each with its own
inbox: a notice is sent in the handler, inside the transaction that inserts the inbox row, so an
event delivered twice (redelivery, claim, replay) finds the row and sends nothing. The SMS and the
email are independent: one channel failing does not send the other again. A provider that fails
raises, so the transaction (inbox row included) rolls back and the event comes back after
`claim_idle_ms`; after `max_deliveries` it is dead-lettered (`penpay dead-letters`). The one window
left is a crash after the provider took the message and before the commit: it is sent again
(providers take no idempotency key), never lost. A recipient over its rate limit is skipped (logged):
a notice is worth less than a flood.

The saga never waits for any of this: it only writes its events; these groups read them later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from application.identity.errors import RateLimited
from application.identity.ports import Notifier
from application.notifications.payment_notices import NoticeFacts, notice_for
from domain.payments.status import TransactionStatus
from domain.shared.clock import Clock, SystemClock
from domain.shared.ids import TransactionId
from persistence.audit_sealer import sealed_in_background, sealer_for
from persistence.payment_notice_reads import notice_facts
from persistence.unit_of_work import SqlUnitOfWork
from security.pii import PiiCipher
from workers.bus import MessageBus
from workers.consumer import EventConsumer
from workers.envelope import EventEnvelope

log = structlog.get_logger("penpay.notices")

NOTICE_STREAMS = ("penpay.payments",)
NOTICE_GROUPS = {"sms": "payment-notice-sms", "email": "payment-notice-email"}
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
    consumers = []
    facts = RecentNoticeFacts()  # one read of a status change's facts serves both channels
    seal = DeferredSeal(engine, delay=seal_delay)
    clock = clock or SystemClock()
    # Most of the stream is status changes that make no notice, acknowledged unread: a larger
    # batch reads and acknowledges a relay's burst in a few round trips instead of one per ten.
    options.setdefault("batch_size", 50)
    for channel in channels:
        group = NOTICE_GROUPS[channel]
        consumer = EventConsumer(
            bus,
            engine,
            group=group,
            streams=NOTICE_STREAMS,
            clock=clock,
            uow_factory=_units_of_work(engine, clock, group, cipher),
            **options,
        )
        # Only a final status makes a notice: the others are acknowledged without an inbox row
        # (two per status change and channel, for nothing).
        consumer.register(
            "TransactionStatusChanged", _handler(channel, notifier, facts, seal), wants=_reaches_final
        )
        consumers.append(consumer)
    return consumers


def _units_of_work(
    engine: AsyncEngine, clock: Clock, group: str, cipher: PiiCipher | None
) -> Callable[[], SqlUnitOfWork]:
    # No seal per notice: its audit record is committed with the inbox row, and DeferredSeal
    # chains it later (usually another process's seal has taken it by then).
    return lambda: SqlUnitOfWork(engine, clock=clock, actor=f"worker:{group}", cipher=cipher, seal_here=False)


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


class RecentNoticeFacts:
    """The notice facts one channel's handler read, kept for the other channel's handler of the
    same status change, which comes moments later in this process: one read per notice, not one
    per channel. An entry serves once and for at most `ttl` seconds (contacts may change; a
    redelivery reads afresh); at most `size` are kept."""

    def __init__(self, *, size: int = 256, ttl: float = 5.0) -> None:
        self._size, self._ttl = size, ttl
        self._kept: dict[TransactionId, tuple[float, NoticeFacts]] = {}

    async def get(self, connection: AsyncConnection, tx_id: TransactionId) -> NoticeFacts | None:
        now = time.monotonic()
        kept = self._kept.pop(tx_id, None)
        if kept is not None and kept[0] > now:
            return kept[1]
        facts = await notice_facts(connection, tx_id)
        if facts is not None:
            self._kept[tx_id] = (now + self._ttl, facts)
            if len(self._kept) > self._size:
                del self._kept[next(iter(self._kept))]  # the oldest
        return facts


def _reaches_final(event: EventEnvelope) -> bool:
    try:
        return TransactionStatus(str(event.data().get("to_status"))) in _REACHED
    except ValueError:
        return False


def _handler(channel: str, notifier: Notifier, facts: RecentNoticeFacts, seal: DeferredSeal) -> Any:
    async def handle(event: EventEnvelope, uow: SqlUnitOfWork) -> None:
        try:
            reached = TransactionStatus(str(event.data().get("to_status")))
        except ValueError:
            return
        if reached not in _REACHED:
            return
        # One narrow read (the transaction's facts and the user's contacts) in the inbox's
        # transaction: the status change carries no contact, and must not.
        tx = await facts.get(uow.connection, TransactionId.from_str(event.aggregate_id))
        if tx is None:
            log.warning("notice.no_transaction", transaction_id=event.aggregate_id)
            return
        notice = notice_for(tx, reached)
        if notice is None:
            return
        context = {"transaction_id": str(tx.id), "channel": channel, "notice": notice.kind}
        try:
            if channel == "sms":
                await notifier.send_sms(to=tx.user_phone.e164, body=notice.sms)
            elif tx.email_verified:  # an address nobody proved is theirs gets nothing
                await notifier.send_email(to=tx.user_email.value, subject=notice.subject, body=notice.email)
            else:
                log.info("notice.skipped", **context, reason="email_not_verified")
                return
        except RateLimited:
            log.warning("notice.suppressed", **context, reason="recipient_rate_limit")
            return
        uow.audit(
            action="PaymentNoticeSent",
            subject_type="Transaction",
            subject_id=str(tx.id),
            details={"channel": channel, "notice": notice.kind, "event_id": str(event.event_id)},
        )
        seal.request()  # a rolled-back notice makes it an empty seal, nothing worse
        log.info("notice.sent", **context)

    return handle

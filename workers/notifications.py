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

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from application.identity.errors import RateLimited
from application.identity.ports import Notifier
from application.notifications.payment_notices import notice_for
from domain.payments.status import TransactionStatus
from domain.shared.clock import Clock
from domain.shared.ids import TransactionId
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
    **options: Any,
) -> list[EventConsumer]:
    consumers = []
    for channel in channels:
        consumer = EventConsumer(
            bus,
            engine,
            group=NOTICE_GROUPS[channel],
            streams=NOTICE_STREAMS,
            clock=clock,
            cipher=cipher,  # a notice reads the user's phone and email: the deployment's PII keys
            **options,
        )
        # Only a final status makes a notice: the others are acknowledged without an inbox row
        # (two per status change and channel, for nothing).
        consumer.register("TransactionStatusChanged", _handler(channel, notifier), wants=_reaches_final)
        consumers.append(consumer)
    return consumers


def _reaches_final(event: EventEnvelope) -> bool:
    try:
        return TransactionStatus(str(event.data().get("to_status"))) in _REACHED
    except ValueError:
        return False


def _handler(channel: str, notifier: Notifier) -> Any:
    async def handle(event: EventEnvelope, uow: SqlUnitOfWork) -> None:
        try:
            reached = TransactionStatus(str(event.data().get("to_status")))
        except ValueError:
            return
        if reached not in _REACHED:
            return
        tx = await uow.transactions.get(TransactionId.from_str(event.aggregate_id))
        if tx is None:
            log.warning("notice.no_transaction", transaction_id=event.aggregate_id)
            return
        notice = notice_for(tx, reached)
        if notice is None:
            return
        user = await uow.users.get(tx.user_id)
        if user is None:
            log.warning("notice.no_user", transaction_id=str(tx.id))
            return
        context = {"transaction_id": str(tx.id), "channel": channel, "notice": notice.kind}
        try:
            if channel == "sms":
                await notifier.send_sms(to=user.phone.e164, body=notice.sms)
            elif user.email_verified:  # an address nobody proved is theirs gets nothing
                await notifier.send_email(to=user.email.value, subject=notice.subject, body=notice.email)
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
        log.info("notice.sent", **context)

    return handle

"""The FloatLow consumer: a float (the Deriv agent balance, the M-Pesa B2C shortcode) too low for a
waiting payment, or fallen below its threshold, is an alert an operator hears (`float_low`, with the
float, its balance and what is needed) and a gauge (penpay_float_low_balance_minor).

It changes no state: new payments the float cannot cover are refused at initiation by the use cases
themselves, against the live balance (application/payments/float_cover.py), so they are refused even
while this consumer is down, and taken again the moment `penpay float fund` books the top-up.
Consumer group "float-low-alerts" on penpay.wallet; its inbox makes a redelivered event alert once.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from application.alerts import raise_alert
from domain.shared.clock import Clock
from domain.wallet.money import Currency, Money
from persistence.unit_of_work import SqlUnitOfWork
from workers import metrics
from workers.bus import MessageBus
from workers.consumer import EventConsumer
from workers.envelope import EventEnvelope

log = structlog.get_logger("penpay.floats")

FLOAT_LOW_GROUP = "float-low-alerts"
FLOAT_LOW_STREAMS = ("penpay.wallet",)


def float_low_consumer(
    bus: MessageBus, engine: AsyncEngine, *, clock: Clock | None = None, **options: Any
) -> EventConsumer:
    consumer = EventConsumer(
        bus, engine, group=FLOAT_LOW_GROUP, streams=FLOAT_LOW_STREAMS, clock=clock, **options
    )
    consumer.register("FloatLow", _on_float_low)
    return consumer


async def _on_float_low(event: EventEnvelope, uow: SqlUnitOfWork) -> None:
    data = event.data()
    kind = str(data.get("kind", "?"))
    try:
        currency = Currency(str(data.get("currency")))
        balance = Money(int(data.get("balance_minor", 0)), currency)
        needed = Money(int(data.get("needed_minor", 0)), currency)
        threshold = Money(int(data.get("threshold_minor", 0)), currency)
    except (ValueError, TypeError):
        log.warning("float_low.unreadable", event_id=str(event.event_id))
        return
    metrics.FLOAT_LOW_BALANCE.labels(kind=kind, currency=currency.value).set(balance.amount_minor)
    if needed.is_positive():
        message = (
            f"{kind} holds {balance}; a payment needing {needed} waits for a top-up, and new payments "
            "it cannot cover are refused until `penpay float fund` books one"
        )
    else:
        message = f"{kind} fell to {balance}, below its threshold of {threshold}; top it up"
    raise_alert(
        "float_low",
        message,
        float=kind,
        currency=currency.value,
        balance_minor=balance.amount_minor,
        needed_minor=needed.amount_minor,
        event_id=str(event.event_id),
    )

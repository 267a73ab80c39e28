"""The saga worker's wiring (`penpay worker saga`, the embedded stack, the saga tests): the
consumer that wakes the payment sagas, and the sweeper that looks again at every waiting one.

Without Redis the bus is in-process, this process's alone: the worker then also runs the outbox
relay and the consumers that would otherwise be other processes' (payment notices, FloatLow)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from penpay.wiring.daemon import Daemon
from penpay.wiring.notify import build_notify_worker
from penpay.wiring.relay import build_relay

if TYPE_CHECKING:
    from application.identity.ports import Notifier
    from penpay.bootstrap import Core, Payments
    from workers.bus import MessageBus
    from workers.consumer import EventConsumer
    from workers.relay import OutboxRelay
    from workers.sagas import Sweeper


@dataclass
class SagaWorker(Daemon):
    payments: Payments | None = None
    saga_consumer: EventConsumer | None = None
    sweeper: Sweeper | None = None
    relay: OutboxRelay | None = None


def build_saga_worker(
    core: Core,
    *,
    payments: Payments | None = None,
    bus: MessageBus | None = None,
    stream_prefix: str = "",
    consume: bool = True,
    sweep: bool = True,
    in_process: bool | None = None,
    relay: bool | None = None,
    notifier: Notifier | None = None,
    relay_options: dict[str, Any] | None = None,
    **consumer_options: Any,
) -> SagaWorker:
    """payments: the sagas (default: bootstrap.payments(core), closed with the worker);
    consume / sweep: run the saga consumer / the sweeper; in_process (default: without Redis) adds
    the notices (`notifier`, default from settings) and the FloatLow alerts; relay (default: as
    in_process) the outbox relay to `bus`, with relay_options (default: polls every 0.1 s)."""
    from penpay.bootstrap import payments as build_payments
    from workers.float_low import float_low_consumer
    from workers.sagas import Sweeper, saga_consumer

    s = core.settings
    worker = SagaWorker()
    if payments is None:
        payments = build_payments(core)
        worker.closers.append(payments.close)
    worker.payments = payments
    if in_process is None:
        in_process = not s.redis_url
    if consume:
        if bus is None:
            bus = core.message_bus(stream_prefix=stream_prefix)
        worker.saga_consumer = saga_consumer(
            bus, core.engine, payments.saga, clock=core.clock, **consumer_options
        )
        worker.consumers.append(worker.saga_consumer)
        if relay if relay is not None else in_process:
            worker.relay = build_relay(core, bus=bus, **({"poll_interval": 0.1} | (relay_options or {})))
            worker.loops.append(worker.relay.run)
        if in_process:
            notices = build_notify_worker(core, bus=bus, notifier=notifier, **consumer_options)
            worker.consumers += notices.consumers
            worker.closers += notices.closers
            alerts = float_low_consumer(bus, core.engine, clock=core.clock, **consumer_options)
            worker.consumers.append(alerts)
    if sweep:
        worker.sweeper = Sweeper(
            core.engine,
            payments.saga,
            min_age=timedelta(seconds=s.sweeper_min_age),
            event_grace=timedelta(seconds=s.sweeper_event_grace),
            interval=s.sweeper_interval,
            clock=core.clock,
            queue_delay=worker.saga_consumer.queue_delay if worker.saga_consumer is not None else None,
        )
        worker.loops.append(worker.sweeper.run)
    return worker

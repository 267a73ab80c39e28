"""The outbox relay's wiring (`penpay relay`; the saga worker and the embedded stack run one on the
in-process bus, the saga tests drive one by hand)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from workers.relay import OutboxRelay

if TYPE_CHECKING:
    from penpay.bootstrap import Core
    from workers.bus import MessageBus


def build_relay(
    core: Core,
    *,
    bus: MessageBus | None = None,
    stream_prefix: str = "",
    stream_maxlen: int | None = None,
    batch_size: int = 100,
    poll_interval: float = 0.5,
) -> OutboxRelay:
    """The relay from the core's database to `bus` (default: the core's bus, closed with the core)."""
    if bus is None:
        bus = core.message_bus(stream_prefix=stream_prefix, stream_maxlen=stream_maxlen)
    return OutboxRelay(core.engine, bus, batch_size=batch_size, poll_interval=poll_interval, clock=core.clock)

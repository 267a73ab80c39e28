"""Run the relay and consumers in one process until stopped (SIGTERM / Ctrl-C).

The embedded default (no PENPAY_REDIS_URL) must run the relay and every consumer in the same
process, on one InProcessBus: that bus lives in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence

from workers.consumer import EventConsumer
from workers.relay import OutboxRelay


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGINT and SIGTERM (call from inside the running loop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


async def run_workers(
    stop: asyncio.Event, *, relay: OutboxRelay | None = None, consumers: Sequence[EventConsumer] = ()
) -> None:
    for consumer in consumers:
        await consumer.start()
    tasks = [consumer.run(stop) for consumer in consumers]
    if relay is not None:
        tasks.append(relay.run(stop))
    await asyncio.gather(*tasks)

"""What every wired daemon is: consumers and loops that run until `stop`, and what closes after.

The wiring functions (penpay/wiring/<daemon>.py) return one of these; a command runs it until
SIGTERM (`run_until_signalled`), the embedded stack runs it beside the others, and the tests drive
its parts one step at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from penpay.bootstrap import Core
    from workers.consumer import EventConsumer

Loop = Callable[[asyncio.Event], Awaitable[object]]
Closer = Callable[[], Awaitable[object]]


@dataclass
class Daemon:
    consumers: list[EventConsumer] = field(default_factory=list)
    loops: list[Loop] = field(default_factory=list)  # e.g. relay.run, sweeper.run, auditor.run
    closers: list[Closer] = field(default_factory=list)

    async def start(self) -> None:
        """Create the consumers' groups (again is harmless): from then on nothing published is missed."""
        for consumer in self.consumers:
            await consumer.start()

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        await asyncio.gather(
            *(consumer.run(stop) for consumer in self.consumers), *(loop(stop) for loop in self.loops)
        )

    async def close(self) -> None:
        for close in reversed(self.closers):
            await close()


async def run_until_signalled(daemon: Daemon, core: Core) -> None:
    """A command's daemon: run until SIGINT/SIGTERM, then close it and the core."""
    from workers.host import stop_on_signals

    stop = asyncio.Event()
    stop_on_signals(stop)
    try:
        await daemon.run(stop)
    finally:
        await daemon.close()
        await core.close()

"""Leadership terms: the gateway writes the journal only while it holds the lease, and only once
the journal's fence has been raised to its term's token (then an earlier leader can no longer
claim). A new term connects the agent, raises the fence and sweeps what earlier leaders left."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

from deriv_gateway import journal as jn
from deriv_gateway.connection import DerivConnection
from deriv_gateway.lease import Lease
from deriv_gateway.logs import get_logger
from deriv_gateway.protocol import errors
from domain.shared.clock import Clock

log = get_logger("deriv_gateway.term")

# (token, started): resolve the rows earlier leaders left SENDING; runs once the fence is raised
Sweep = Callable[[int, datetime], Awaitable[None]]


class LeadershipTerm:
    def __init__(
        self,
        lease: Lease,
        journal: jn.Journal,
        agent: DerivConnection,
        *,
        request_timeout: float,
        sweep: Sweep,
        clock: Clock,
    ) -> None:
        self.lease = lease
        self.journal = journal
        self.agent = agent
        self._request_timeout = request_timeout
        self._sweep = sweep
        self._clock = clock
        # the token the journal's fence was raised to in this term (None: not yet)
        self.fenced_token: int | None = None
        self._fence_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.changes = 0

    async def on_leadership(self, leader: bool, token: int | None) -> None:
        async with self._lock:
            self.changes += 1
            await self.end()
            if leader:
                log.info("gateway.leader", fence=token)
                await self.agent.start()
                if token is not None:
                    self._task = asyncio.create_task(self._run(token), name="gateway-term")
            else:
                log.warning("gateway.standby", fence=token)
                await self.agent.close()

    async def end(self) -> None:
        self.fenced_token = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def token(self) -> int:
        """The lease's fencing token; NotLeader on standby."""
        token = self.lease.token
        if not self.lease.is_leader or token is None:
            raise errors.NotLeader("this gateway is on standby (it does not hold the lease)")
        return token

    async def fenced(self) -> int:
        """This term's token, once the journal's fence has been raised to it.

        A new leader does nothing with the journal before that: afterwards an old leader can no
        longer claim, so the sweep sees every row a previous leader could still leave SENDING.
        """
        token = self.token()
        if self.fenced_token == token:
            return token
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._request_timeout
        while self.fenced_token != token:
            if loop.time() > deadline:
                raise errors.NotLeader("this gateway is taking over (journal fence not raised yet)")
            self._fence_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fence_event.wait(), max(0.0, deadline - loop.time()))
            token = self.token()
        return token

    def holds(self, token: int) -> bool:
        return self.lease.is_leader and self.lease.token == token

    async def _run(self, token: int) -> None:
        """A new leader: raise the journal's fence, then resolve what earlier leaders left SENDING."""
        # on the journal's clock: the sweep takes the rows last sent before this instant
        started = self._clock.now()
        delay = 0.1
        while self.holds(token):
            try:
                await self.journal.raise_fence(token)
                break
            except jn.StaleFencingToken as exc:
                await self.lease.fence_behind(exc.current if exc.current is not None else token)
                return
            except Exception as exc:
                log.warning("gateway.fence_failed", error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        else:
            return
        self.fenced_token = token
        self._fence_event.set()
        log.info("gateway.fence_raised", fence=token)
        await self._sweep(token, started)

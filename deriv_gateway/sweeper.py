"""A new term's sweep: every v3 row left SENDING before it began is settled from the agent's
statement. Found -> DONE; absent after the settle window -> NOT_SENT (a later request sends it);
inside the window -> looked at again when it ends. Never sends a money frame."""

from __future__ import annotations

import asyncio
from datetime import datetime

from deriv_gateway import journal as jn
from deriv_gateway.agent_account import wait_agent_ready
from deriv_gateway.connection import DerivConnection
from deriv_gateway.journal_steps import JournalSteps, age
from deriv_gateway.logs import get_logger
from deriv_gateway.money_call import MoneyCall, MoneyResult, OperationNotExecuted
from deriv_gateway.money_calls import MoneyCalls
from deriv_gateway.protocol import errors
from deriv_gateway.protocol.messages import StatementMatch
from deriv_gateway.single_flight import SingleFlight
from deriv_gateway.statement_reads import StatementReads
from deriv_gateway.term import LeadershipTerm
from domain.shared.clock import Clock

log = get_logger("deriv_gateway.sweeper")

SWEEP_PAGE = 100


class Sweeper:
    def __init__(
        self,
        journal: jn.Journal,
        agent: DerivConnection,
        *,
        term: LeadershipTerm,
        flights: SingleFlight,
        steps: JournalSteps,
        statements: StatementReads,
        money: MoneyCalls,
        request_timeout: float,
        clock: Clock,
    ) -> None:
        self.journal = journal
        self.agent = agent
        self.term = term
        self.flights = flights
        self.steps = steps
        self.statements = statements
        self.money = money
        self._request_timeout = request_timeout
        self._clock = clock

    async def sweep(self, token: int, started: datetime) -> None:
        """Every row left SENDING before `started` (this term's start), page by page, until none is
        left unsettled or the term ends."""
        delay = 1.0
        while self.term.holds(token):
            retry_in: float | None = None
            after = ""
            try:
                await wait_agent_ready(self.agent, self._request_timeout)
                while True:
                    rows = await self.journal.list_sending(SWEEP_PAGE, sent_before=started, after=after)
                    if not rows:
                        break
                    after = rows[-1].operation_id
                    # REST rows (client "@nickname") are the REST transport's to sweep
                    rows = [row for row in rows if not row.client_loginid.startswith("@")]
                    wait = await self._sweep_rows(rows, token) if rows else None
                    if wait is not None:
                        retry_in = wait if retry_in is None else min(retry_in, wait)
            except errors.NotLeader:
                return
            except Exception as exc:
                code = exc.code if isinstance(exc, errors.DerivError) else type(exc).__name__
                log.warning("gateway.sweep_failed", error=code)
                retry_in, delay = delay, min(delay * 2, 30.0)
            if retry_in is None:
                log.info("gateway.sweep_done", fence=token)
                return
            await asyncio.sleep(max(0.05, retry_in))

    async def _sweep_rows(self, rows: list[jn.Operation], token: int) -> float | None:
        """Settle one page of rows with one statement scan; the seconds until one can be looked at again."""
        since = min(row.created_at for row in rows)
        scanned_at = self._clock.now()
        found = await self.statements.scan({row.description for row in rows}, since, self.agent.request)
        retry_in: float | None = None
        for row in rows:

            async def settle(row: jn.Operation = row) -> MoneyResult:
                return await self._sweep_one(row.operation_id, token, found.get(row.description), scanned_at)

            try:
                await self.flights.run(f"{row.kind}:{row.operation_id}", "sweep", settle)
            except errors.OutcomeUnknown as exc:
                wait = float(exc.details.get("retry_after") or self.steps.unknown_settle)
                retry_in = wait if retry_in is None else min(retry_in, wait)
            except OperationNotExecuted:
                pass
        return retry_in

    async def _sweep_one(
        self, operation_id: str, token: int, found: StatementMatch | None, scanned_at: datetime
    ) -> MoneyResult:
        row = await self.journal.get(operation_id)
        if row is None or row.status != jn.SENDING:
            # settled meanwhile (a request, or the sender of this process finishing)
            return MoneyResult(operation_id, 0, "", 0, "", "", True, False)
        await self.steps.take_over(row, token)
        if found is not None:
            return await self.money.record_found(MoneyCall.of_row(row, token), found)
        waited = age(row, scanned_at)
        if waited < self.steps.unknown_settle:
            raise self.steps.unknown(row, waited)
        await self.steps.mark_not_executed(row, token, waited)
        raise OperationNotExecuted(operation_id)

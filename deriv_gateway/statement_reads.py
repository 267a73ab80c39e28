"""Reads of Deriv's statement: the line carrying one of our references (batched), a page for
reconciliation, and whether a line carrying our reference is really about our operation."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from deriv_gateway import foreign_answers
from deriv_gateway.agent_account import agent_digits, wait_agent_ready
from deriv_gateway.config import GatewayConfig
from deriv_gateway.connection import DerivConnection
from deriv_gateway.money_call import MoneyCall
from deriv_gateway.protocol import errors
from deriv_gateway.protocol.messages import StatementMatch, find_in_statement, statement_count
from deriv_gateway.statement_batch import StatementBatcher
from deriv_gateway.statement_pages import StatementLine, page_size, statement_lines
from deriv_gateway.term import LeadershipTerm

STATEMENT_PAGE = 100
_REFERENCE = re.compile(r"[A-Za-z0-9-]{1,64}")

# `request("statement", fields)` on the agent's connection or on a client's own session
StatementRequest = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class StatementReads:
    def __init__(self, config: GatewayConfig, agent: DerivConnection, term: LeadershipTerm) -> None:
        self.config = config
        self.agent = agent
        self.term = term
        # unknown outcomes looked up in the agent's statement together (a drop makes many at once)
        self.batcher = StatementBatcher(
            lambda wanted, since: self.scan(wanted, since, self.agent.request), self._agent_ready
        )

    async def _agent_ready(self) -> None:
        await wait_agent_ready(self.agent, self.config.request_timeout)

    async def find_line(self, reference: str, since: datetime) -> StatementMatch | None:
        """Read-only: the agent's statement line carrying `reference` (operators' evidence checks).
        Joins the batched statement reads; never sends a money frame."""
        if not _REFERENCE.fullmatch(reference):
            raise errors.InputValidationFailed("reference: 1 to 64 of A-Z a-z 0-9 and '-'")
        self.term.token()
        return await self.batcher.find(reference, since)

    async def page(
        self, date_from: int, date_to: int, offset: int, limit: int
    ) -> tuple[list[StatementLine], bool]:
        """Read-only: one page of the agent's statement in [date_from, date_to] (Unix seconds), and
        whether it was full (more may follow). Reconciliation reads Deriv's records this way."""
        if date_from < 0 or date_to < date_from or offset < 0:
            raise errors.InputValidationFailed("date range or offset out of bounds")
        self.term.token()
        await self._agent_ready()
        size = page_size(limit)
        message = await self.agent.request(
            "statement",
            {"description": 1, "limit": size, "offset": offset, "date_from": date_from, "date_to": date_to},
        )
        currency = str(self.agent.authorization.get("currency") or "USD")
        lines = statement_lines(message, agent_digits(self.agent, currency))
        return lines, statement_count(message) >= size

    async def find(self, description: str, since: datetime) -> StatementMatch | None:
        """Search the agent's statement for the reference (paged, from shortly before the row was
        created), in one read with the other lookups waiting for one."""
        return await self.batcher.find(description, since)

    async def scan(
        self, descriptions: set[str], since: datetime, request: StatementRequest
    ) -> dict[str, StatementMatch]:
        """The statement lines carrying these references, read from `since` minus the lookback."""
        date_from = max(0, int(since.timestamp() - self.config.statement_lookback))
        wanted = set(descriptions)
        matches: dict[str, StatementMatch] = {}
        offset = 0
        while wanted:
            message = await request(
                "statement",
                {"description": 1, "limit": STATEMENT_PAGE, "offset": offset, "date_from": date_from},
            )
            for description in list(wanted):
                match = find_in_statement(message, description)
                if match is not None:
                    matches[description] = match
                    wanted.discard(description)
            count = statement_count(message)
            if count < STATEMENT_PAGE:
                break
            offset += count
        return matches

    def check_line_is_ours(self, call: MoneyCall, found: StatementMatch) -> None:
        """A statement line carrying our reference proves our operation executed only if it is about
        it: our amount, our client, the agent. Otherwise it is someone else's line (or a server that
        answers with its own): an unknown outcome and an alert, never "executed"."""
        operation_id, kind, loginid, cents = (
            call.operation_id,
            call.kind,
            call.client_loginid,
            call.amount_cents,
        )
        client, agent = (
            (found.to_loginid, found.from_loginid)
            if kind == "transfer"
            else (found.from_loginid, found.to_loginid)
        )
        problem = None
        if found.amount_cents != cents:
            problem = f"amount {found.amount_cents} where ours is {cents}"
        elif loginid and client and client.upper() != loginid.upper():
            problem = f"client {client} where ours is {loginid}"
        elif self.agent.loginid and agent and agent.upper() != self.agent.loginid.upper():
            problem = f"agent {agent} where ours is {self.agent.loginid}"
        if problem is None:
            return
        foreign_answers.report(
            f"a statement line with our reference names another operation ({problem})",
            {
                "transaction_id": found.transaction_id,
                "amount_cents": found.amount_cents,
                "from": found.from_loginid,
                "to": found.to_loginid,
                "longcode": found.longcode,
            },
            operation_id=operation_id,
            operation_kind=kind,
            deriv_transaction_id=found.transaction_id,
        )
        raise errors.ForeignAnswer(
            f"the statement line for {operation_id} names another operation ({problem}); outcome unknown",
            details={"retry_after": self.config.unknown_settle, "outcome": "unknown"},
        )

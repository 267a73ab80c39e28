"""The gateway's operations, independent of gRPC: one agent connection, one leadership term at a
time, and the parts that do the work, each a module of its own:

  term            leadership terms: the lease, the journal's fence, the token every write carries
  money_calls     Transfer and Withdraw under the journal protocol (journal_steps, single_flight)
  sweeper         what earlier leaders left SENDING, settled from the statement when a term begins
  statement_reads the agent's statement: our references in it, pages for reconciliation
  client_calls    calls on a client's own token (authorize, settings, the withdrawal code)
  balance_watch   the agent's balance, asked or streamed

Money calls follow one rule: at most one `paymentagent_transfer` (or `paymentagent_withdraw`) per
PenPay operation id, ever (money_calls says how).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from deriv_gateway import journal as jn
from deriv_gateway.balance_watch import Balance, BalanceWatch
from deriv_gateway.client_calls import ClientCalls
from deriv_gateway.config import GatewayConfig
from deriv_gateway.connection import DerivConnection
from deriv_gateway.journal_steps import JournalSteps
from deriv_gateway.lease import Lease
from deriv_gateway.money_call import MoneyResult
from deriv_gateway.money_calls import MoneyCalls
from deriv_gateway.protocol.messages import StatementMatch
from deriv_gateway.single_flight import SingleFlight
from deriv_gateway.statement_pages import StatementLine
from deriv_gateway.statement_reads import StatementReads
from deriv_gateway.sweeper import Sweeper
from deriv_gateway.term import LeadershipTerm
from domain.shared.clock import Clock


class DerivGateway:
    def __init__(
        self, config: GatewayConfig, journal: jn.Journal, lease: Lease, *, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.journal = journal
        self.lease = lease
        # Every "now" the gateway compares (settle windows, a term's start, statement windows) is
        # compared with the journal's timestamps: one clock for both, the journal's unless given.
        if clock is not None and clock is not journal.clock:
            raise ValueError("the gateway and its journal must share one clock")
        self.clock: Clock = journal.clock
        self.agent = DerivConnection(
            config.ws_url,
            config.app_id,
            config.agent_token,
            name="agent",
            request_timeout=config.request_timeout,
            ping_interval=config.ping_interval,
            pong_timeout=config.pong_timeout,
            connect_timeout=config.connect_timeout,
            backoff_initial=config.backoff_initial,
            backoff_max=config.backoff_max,
            compression=config.compression,
            rate_limit_enabled=config.rate_limit_enabled,
            rate_limit_safety=config.rate_limit_safety,
            observer=config.frame_observer,
            can_send=lambda: self.lease.is_leader,
        )
        self.term = LeadershipTerm(
            lease,
            journal,
            self.agent,
            request_timeout=config.request_timeout,
            sweep=self._sweep,
            clock=self.clock,
        )
        self.flights = SingleFlight()
        self.steps = JournalSteps(journal, unknown_settle=config.unknown_settle)
        self.statements = StatementReads(config, self.agent, self.term)
        self.clients = ClientCalls(config, self.agent, self.term)
        self.balances = BalanceWatch(self.agent, self.term, request_timeout=config.request_timeout)
        self.money = MoneyCalls(
            config,
            journal,
            self.agent,
            term=self.term,
            flights=self.flights,
            steps=self.steps,
            statements=self.statements,
            clients=self.clients,
            clock=self.clock,
        )
        self.sweeper = Sweeper(
            journal,
            self.agent,
            term=self.term,
            flights=self.flights,
            steps=self.steps,
            statements=self.statements,
            money=self.money,
            request_timeout=config.request_timeout,
            clock=self.clock,
        )

    async def _sweep(self, token: int, started: datetime) -> None:
        await self.sweeper.sweep(token, started)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.lease.on_change(self.term.on_leadership)
        await self.lease.start()

    async def stop(self) -> None:
        await self.lease.stop()
        await self.term.end()
        await self.agent.close()
        self.balances.stop()

    @property
    def is_leader(self) -> bool:
        return self.lease.is_leader

    @property
    def serving(self) -> bool:
        """Leader, connected, and the journal's fence raised to this term's token."""
        return self.lease.is_leader and self.agent.ready and self.term.fenced_token == self.lease.token

    @property
    def leadership_changes(self) -> int:
        return self.term.changes

    @property
    def balance(self) -> Balance | None:
        """The agent's balance as last streamed (None while nobody watches)."""
        return self.balances.latest

    # --- the operations the servicer calls ------------------------------------------------

    async def transfer(
        self, transfer_id: str, loginid: str, amount_cents: int, currency: str, *, resolve_only: bool = False
    ) -> MoneyResult:
        return await self.money.transfer(
            transfer_id, loginid, amount_cents, currency, resolve_only=resolve_only
        )

    async def withdraw(
        self,
        withdrawal_id: str,
        token: str,
        code: str,
        amount_cents: int,
        currency: str,
        *,
        resolve_only: bool = False,
    ) -> MoneyResult:
        return await self.money.withdraw(
            withdrawal_id, token, code, amount_cents, currency, resolve_only=resolve_only
        )

    async def get_balance(self) -> Balance:
        return await self.balances.get()

    def watch_balance(self) -> AsyncIterator[Balance]:
        return self.balances.watch()

    async def authorize(self, token: str) -> dict[str, Any]:
        return await self.clients.authorize(token)

    async def get_settings(self, token: str) -> tuple[str, dict[str, Any]]:
        return await self.clients.get_settings(token)

    async def request_withdrawal_code(
        self, token: str, amount_cents: int | None = None, currency: str | None = None
    ) -> str:
        return await self.clients.request_withdrawal_code(token, amount_cents, currency)

    async def find_statement_line(self, reference: str, since: datetime) -> StatementMatch | None:
        """Read-only: the agent's statement line carrying `reference` (operators' evidence checks)."""
        return await self.statements.find_line(reference, since)

    async def list_statement(
        self, date_from: int, date_to: int, offset: int, limit: int
    ) -> tuple[list[StatementLine], bool]:
        """Read-only: one page of the agent's statement in [date_from, date_to] (Unix seconds), and
        whether it was full (more may follow)."""
        return await self.statements.page(date_from, date_to, offset, limit)

"""The money calls on the v3 WebSocket: Transfer (paymentagent_transfer on the agent's connection)
and Withdraw (paymentagent_withdraw on the client's), under one rule: at most one execution per
PenPay operation id, ever. The journal row is committed before the frame leaves; a row whose outcome
is unknown is resolved through the agent's `statement` (the operation id is in the description)
before anything else; concurrent calls with one id in this process share one attempt
(single-flight); across processes the row's primary key decides."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError

from deriv_gateway import foreign_answers
from deriv_gateway import journal as jn
from deriv_gateway.agent_account import agent_digits, check_agent_account_currency, wait_agent_ready
from deriv_gateway.client_calls import ClientCalls
from deriv_gateway.config import GatewayConfig
from deriv_gateway.connection import DerivConnection
from deriv_gateway.journal_steps import JournalSteps, age, retry_details
from deriv_gateway.logs import get_logger
from deriv_gateway.money_call import MoneyCall, MoneyResult, OperationConflict, OperationNotExecuted
from deriv_gateway.protocol import errors
from deriv_gateway.protocol.messages import StatementMatch, reference, transfer_fields, withdraw_fields
from deriv_gateway.request_rules import (
    InvalidRequest,
    check_agent_limits,
    check_amount,
    check_client_token,
    check_loginid,
    check_not_the_agent,
    check_operation_id,
    check_verification_code,
)
from deriv_gateway.single_flight import SingleFlight
from deriv_gateway.statement_reads import StatementReads, StatementRequest
from deriv_gateway.term import LeadershipTerm
from domain.shared.clock import Clock

log = get_logger("deriv_gateway.money_calls")


class MoneyCalls:
    def __init__(
        self,
        config: GatewayConfig,
        journal: jn.Journal,
        agent: DerivConnection,
        *,
        term: LeadershipTerm,
        flights: SingleFlight,
        steps: JournalSteps,
        statements: StatementReads,
        clients: ClientCalls,
        clock: Clock,
    ) -> None:
        self.config = config
        self.journal = journal
        self.agent = agent
        self.term = term
        self.flights = flights
        self.steps = steps
        self.statements = statements
        self.clients = clients
        self.clock = clock

    async def _agent_ready(self) -> None:
        await wait_agent_ready(self.agent, self.config.request_timeout)

    def _check_limits(self, cents: int, currency: str) -> None:
        """Deriv refuses a new operation outside the agent's limits: refused before any row or frame."""
        check_agent_limits(cents, currency, self.config.transfer_min_cents, self.config.transfer_max_cents)

    # --- the calls -------------------------------------------------------------------

    async def transfer(
        self, transfer_id: str, loginid: str, amount_cents: int, currency: str, *, resolve_only: bool = False
    ) -> MoneyResult:
        check_operation_id("transfer_id", transfer_id)
        check_loginid("client_loginid", loginid)
        check_amount(amount_cents, currency)
        self.term.token()
        key = f"transfer:{transfer_id}"
        factory = (
            partial(self._resolve_only, "transfer", transfer_id, loginid.upper(), amount_cents, currency, "")
            if resolve_only
            else partial(self._transfer, transfer_id, loginid.upper(), amount_cents, currency)
        )
        return await self.flights.run(key, "resolve" if resolve_only else "send", factory)

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
        check_operation_id("withdrawal_id", withdrawal_id)
        if token or not resolve_only:  # resolve_only without a token reads the agent's statement
            check_client_token(token)
        if not resolve_only:  # resolve_only never sends, so needs no code
            check_verification_code(code)
        check_amount(amount_cents, currency)
        self.term.token()
        key = f"withdraw:{withdrawal_id}"
        factory = (
            partial(self._resolve_only, "withdraw", withdrawal_id, None, amount_cents, currency, token)
            if resolve_only
            else partial(self._withdraw, withdrawal_id, token, code, amount_cents, currency)
        )
        return await self.flights.run(key, "resolve" if resolve_only else "send", factory)

    async def _transfer(self, transfer_id: str, loginid: str, cents: int, currency: str) -> MoneyResult:
        # the usual case (fence raised, agent connected) without a coroutine for each wait
        token = self.term.token()
        if self.term.fenced_token != token:
            token = await self.term.fenced()
        if not self.agent.usable:
            await self._agent_ready()
        check_agent_account_currency(self.agent, currency)
        try:
            self._check_limits(cents, currency)
            check_not_the_agent("client_loginid", loginid, self.agent.loginid)
        except InvalidRequest:
            # an operation already journaled (sent under earlier limits, say) is settled, never refused
            if await self.journal.get(transfer_id) is None:
                raise
        description = reference(transfer_id, self.config.reference_prefix)
        call = MoneyCall(transfer_id, "transfer", loginid, cents, currency, description, token)
        created, row = await self.steps.claim(call)
        if not created:
            if not row.same_request("transfer", loginid, cents, currency):
                raise OperationConflict(f"transfer id {transfer_id} was used for a different transfer")
            settled = await self._settle_existing(row, token)
            if settled is not None:
                return settled
        fields = transfer_fields(loginid, cents, currency, description, agent_digits(self.agent, currency))

        async def send() -> dict[str, Any]:
            return await self.agent.request("paymentagent_transfer", fields)

        return await self._send_journaled(call, send)

    async def _withdraw(
        self, withdrawal_id: str, token_value: str, code: str, cents: int, currency: str
    ) -> MoneyResult:
        # The usual case, a new operation: the journal is not read before the claim (whose insert
        # finds a row that exists). Only what refuses the call first looks for its row: a final one
        # is replayed, and an operation already journaled (sent under earlier limits, say) is
        # settled, never refused.
        token = await self.term.fenced()
        try:
            if not self.agent.usable:
                await self._agent_ready()
            check_agent_account_currency(self.agent, currency)
            agent_loginid = self.agent.loginid
            if not agent_loginid:
                raise errors.NotConnected("agent account not authorized yet")
        except Exception:
            found = await self._journaled(withdrawal_id, cents, currency)
            if isinstance(found, MoneyResult):
                return found
            raise
        journaled = False  # True: the call goes on for a row already in the journal
        try:
            self._check_limits(cents, currency)
        except InvalidRequest:
            found = await self._journaled(withdrawal_id, cents, currency)
            if found is None:
                raise
            if isinstance(found, MoneyResult):
                return found
            journaled = True
        description = reference(withdrawal_id, self.config.reference_prefix)
        async with contextlib.AsyncExitStack() as opened:
            try:
                session = await opened.enter_async_context(self.clients.session(token_value))
            except Exception:
                found = await self._journaled(withdrawal_id, cents, currency)
                if isinstance(found, MoneyResult):
                    return found
                raise
            loginid = session.loginid
            if not journaled:
                try:
                    check_not_the_agent("client_token", loginid, agent_loginid)
                except InvalidRequest:
                    found = await self._journaled(withdrawal_id, cents, currency)
                    if found is None:
                        raise
                    if isinstance(found, MoneyResult):
                        return found
            call = MoneyCall(withdrawal_id, "withdraw", loginid, cents, currency, description, token)
            created, row = await self.steps.claim(call)
            if not created:
                if not row.same_request("withdraw", loginid, cents, currency):
                    raise OperationConflict(
                        f"withdrawal id {withdrawal_id} was used for a different withdrawal"
                    )
                settled = await self._settle_existing(row, token)
                if settled is not None:
                    return settled
            fields = withdraw_fields(
                agent_loginid, cents, currency, code, description, agent_digits(self.agent, currency)
            )

            async def send() -> dict[str, Any]:
                if not self.term.lease.is_leader:
                    raise errors.NotLeader("lease lost")
                return await session.request("paymentagent_withdraw", fields)

            return await self._send_journaled(call, send)

    async def _journaled(
        self, withdrawal_id: str, cents: int, currency: str
    ) -> MoneyResult | jn.Operation | None:
        """The journal's row of this id, read when a new withdrawal's call is refused before its claim:
        replayed when it is a withdrawal that ended (DONE or FAILED), else as it is (None: no row)."""
        existing = await self.journal.get(withdrawal_id)
        if existing is None or existing.kind != "withdraw" or existing.status not in (jn.DONE, jn.FAILED):
            return existing
        if existing.amount_cents != cents or existing.currency != currency:
            raise OperationConflict(f"withdrawal id {withdrawal_id} was used for a different withdrawal")
        return self.steps.replay(existing)

    # --- a row that already exists ---------------------------------------------------------

    async def _settle_existing(self, row: jn.Operation, token: int) -> MoneyResult | None:
        """For a row that already exists: the final result, or None if it may be (re)sent now."""
        if row.status in (jn.DONE, jn.FAILED):
            return self.steps.replay(row)
        if row.status == jn.NOT_SENT:
            await self.journal.resend(row.operation_id, token, jn.NOT_SENT)
            return None
        # SENDING, and not by a request of this process (single-flight): outcome unknown.
        await self.steps.take_over(row, token)
        log.info("gateway.resolving_unknown", operation_id=row.operation_id, kind=row.kind)
        scanned_at = self.clock.now()
        try:
            found = await self.statements.find(row.description, row.created_at)
        except errors.DerivError as exc:
            # The earlier frame may have executed: the caller must hear "outcome unknown", never a
            # RateLimit / not-connected of the lookup, which reads as "held back, nothing moved".
            raise errors.OutcomeUnknown(
                f"outcome of operation {row.operation_id} unknown: the statement is unavailable "
                f"({exc.code}); retry later",
                code="OutcomeUnknown",
                details=retry_details(exc),
            ) from exc
        if found is not None:
            return await self.record_found(MoneyCall.of_row(row, token), found)
        waited = age(row, scanned_at)
        if waited < self.config.unknown_settle:
            raise self.steps.unknown(row, waited)
        # Not in the statement long after the last send: it never executed. Send again.
        log.warning("gateway.unknown_resolved_absent", operation_id=row.operation_id, attempts=row.attempts)
        await self.journal.resend(row.operation_id, token, jn.SENDING)
        return None

    # --- resolve without sending -------------------------------------------------------

    async def _resolve_only(
        self,
        kind: str,
        operation_id: str,
        loginid: str | None,
        cents: int,
        currency: str,
        client_token: str,
    ) -> MoneyResult:
        """The outcome of an operation from the journal or Deriv's statement; never sends a money frame.

        A withdrawal with the client's token is looked up in the client's statement (its transaction id
        is then the client-side debit, as in a direct reply); without it, in the agent's statement (the
        agent-side credit).
        """
        token = await self.term.fenced()
        row = await self.journal.get(operation_id)
        if row is not None:
            self._check_same(row, kind, loginid, cents, currency)
            if row.status in (jn.DONE, jn.FAILED):
                return self.steps.replay(row)
            if row.status == jn.NOT_SENT:
                raise OperationNotExecuted(f"operation {operation_id} was not executed (journal: NOT_SENT)")
        await self._agent_ready()
        check_agent_account_currency(self.agent, currency)  # else a statement match would be journaled in it
        if kind == "withdraw" and client_token:
            async with self.clients.session(client_token) as session:
                if row is not None:
                    self._check_same(row, kind, session.loginid, cents, currency)
                return await self._resolve_row(
                    kind, operation_id, session.loginid, cents, currency, row, token, session.request
                )
        return await self._resolve_row(kind, operation_id, loginid, cents, currency, row, token, None)

    def _check_same(
        self, row: jn.Operation, kind: str, loginid: str | None, cents: int, currency: str
    ) -> None:
        same = row.kind == kind and row.amount_cents == cents and row.currency == currency
        if not same or (loginid is not None and row.client_loginid.upper() != loginid.upper()):
            raise OperationConflict(f"operation id {row.operation_id} was used for a different {row.kind}")

    async def _resolve_row(
        self,
        kind: str,
        operation_id: str,
        loginid: str | None,
        cents: int,
        currency: str,
        row: jn.Operation | None,
        token: int,
        request: StatementRequest | None,  # None: the agent's statement
    ) -> MoneyResult:
        if row is not None:
            await self.steps.take_over(row, token)
            client, description, since = row.client_loginid, row.description, row.created_at
        else:
            # No row: the gateway never claimed it, so never sent it. The statement is still read
            # (a lost journal row must not turn into a second execution), as far back as the lookback.
            client, description = loginid or "", reference(operation_id, self.config.reference_prefix)
            since = self.clock.now()
        call = MoneyCall(operation_id, kind, client, cents, currency, description, token)
        scanned_at = self.clock.now()
        try:
            if request is None:
                found = await self.statements.find(description, since)
            else:
                found = (await self.statements.scan({description}, since, request)).get(description)
        except errors.DerivError as exc:
            # The statement call was refused (RateLimit is a NotExecuted of *that* call): it says
            # nothing about the operation, which must not be reported as not executed.
            raise errors.OutcomeUnknown(
                f"the statement is unavailable ({exc.code}); retry later",
                code="OutcomeUnknown",
                details=retry_details(exc),
            ) from exc
        if found is not None:
            if row is not None:
                return await self.record_found(call, found)
            return await self._record_unjournaled(call, found)
        if row is None:
            raise OperationNotExecuted(f"operation {operation_id} was never sent (no journal row)")
        waited = age(row, scanned_at)
        if waited < self.config.unknown_settle:
            raise self.steps.unknown(row, waited)
        await self.steps.mark_not_executed(row, token, waited)
        raise OperationNotExecuted(
            f"operation {operation_id} is not in the statement {waited:.0f}s after it was sent: not executed"
        )

    async def _record_unjournaled(self, call: MoneyCall, found: StatementMatch) -> MoneyResult:
        self.statements.check_line_is_ours(call, found)
        # the client: the other side of the agent's line (a transfer goes to it, a withdrawal comes from it)
        counterparty = found.to_loginid if call.kind == "transfer" else found.from_loginid
        client = call.client_loginid or counterparty or ""
        result = {"counterparty_name": "", "resolved_from_statement": True, "longcode": found.longcode[:200]}
        try:
            created = await self.journal.record_unjournaled(
                operation_id=call.operation_id,
                kind=call.kind,
                client_loginid=client,
                amount_cents=call.amount_cents,
                currency=call.currency,
                description=call.description,
                token=call.token,
                deriv_transaction_id=found.transaction_id,
                result=result,
            )
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader has written to the journal") from None
        if not created:
            raise errors.OutcomeUnknown(
                f"operation {call.operation_id} appeared in the journal meanwhile; retry",
                code="OutcomeUnknown",
            )
        log.error("gateway.executed_without_journal_row", operation_id=call.operation_id, kind=call.kind)
        return MoneyResult(
            call.operation_id, found.transaction_id, client, call.amount_cents, call.currency, "", False, True
        )

    # --- send once, record what is known ------------------------------------------------

    async def record_found(self, call: MoneyCall, found: StatementMatch) -> MoneyResult:
        """The operation's line in the statement: DONE with its transaction id, if the line is ours."""
        self.statements.check_line_is_ours(call, found)
        result = {"counterparty_name": "", "resolved_from_statement": True, "longcode": found.longcode[:200]}
        try:
            await self.journal.finish(
                call.operation_id,
                call.token,
                jn.DONE,
                deriv_transaction_id=found.transaction_id,
                result=result,
            )
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader owns this operation") from None
        log.info("gateway.resolved_from_statement", operation_id=call.operation_id, kind=call.kind)
        return MoneyResult(
            call.operation_id,
            found.transaction_id,
            call.client_loginid,
            call.amount_cents,
            call.currency,
            "",
            False,
            True,
        )

    async def _send_journaled(
        self, call: MoneyCall, send: Callable[[], Awaitable[dict[str, Any]]]
    ) -> MoneyResult:
        """The row is SENDING and ours: send once, then record whatever is known."""
        operation_id, kind, loginid, token = call.operation_id, call.kind, call.client_loginid, call.token
        started = time.monotonic()
        try:
            reply = await send()
        except errors.NotExecuted as exc:
            await self.steps.finish_quietly(operation_id, token, jn.NOT_SENT, exc)
            raise
        except errors.OutcomeUnknown as exc:
            log.warning("gateway.outcome_unknown", operation_id=operation_id, kind=kind, code=exc.code)
            return await self._resolve_after_failure(call, exc)
        except errors.DerivError as exc:
            await self.steps.finish_quietly(operation_id, token, jn.FAILED, exc)
            raise
        method = "paymentagent_transfer" if kind == "transfer" else "paymentagent_withdraw"
        txn = reply.get("transaction_id")
        if not isinstance(txn, int):
            # "1" without a transaction id would be a dry run; the gateway never sends one
            return await self._resolve_after_failure(
                call, errors.UnexpectedReply(f"{method} reply without transaction_id")
            )
        to = reply.get("client_to_loginid")
        if kind == "transfer" and to is not None and str(to).upper() != loginid.upper():
            # the echo was ours, the credited client is not: not proof of our transfer either way
            foreign_answers.report(
                "the transfer reply names another client",
                reply,
                operation_id=operation_id,
                operation_kind=kind,
            )
            return await self._resolve_after_failure(
                call, errors.ForeignAnswer(f"{method} reply names client {to}, not {loginid}")
            )
        name = str(reply.get("client_to_full_name") or reply.get("paymentagent_name") or "")
        try:
            await self.journal.finish(
                operation_id,
                token,
                jn.DONE,
                deriv_transaction_id=txn,
                result={"counterparty_name": name, "client_to_loginid": reply.get("client_to_loginid")},
            )
        except (jn.StaleFencingToken, IntegrityError):
            if await self.steps.still_ours(operation_id, token):
                # not deposed: the journal refused the transaction id, another operation's already
                foreign_answers.report(
                    f"the {method} reply carries transaction id {txn}, another operation's",
                    reply,
                    operation_id=operation_id,
                    operation_kind=kind,
                    deriv_transaction_id=txn,
                )
                return await self._resolve_after_failure(
                    call,
                    errors.ForeignAnswer(f"{method} reply carries another operation's transaction id {txn}"),
                )
            log.error("gateway.deposed_after_send", operation_id=operation_id, kind=kind)
            raise errors.NotLeader(
                "lease lost while the call was in flight; a newer leader resolves it"
            ) from None
        log.info(
            "gateway.sent",
            operation_id=operation_id,
            kind=kind,
            ms=round((time.monotonic() - started) * 1000),
        )
        return MoneyResult(operation_id, txn, loginid, call.amount_cents, call.currency, name, False, False)

    async def _resolve_after_failure(self, call: MoneyCall, cause: errors.DerivError) -> MoneyResult:
        """The frame left and no definite answer came back: find it in the statement, now."""
        try:
            found = await self.statements.find(call.description, self.clock.now())
        except errors.DerivError as exc:
            raise errors.OutcomeUnknown(
                f"outcome unknown ({cause.code}) and the statement is unavailable ({exc.code}); retry later",
                code="OutcomeUnknown",
                details=retry_details(exc),
            ) from exc
        if found is None:
            # keep the cause's type and code (Timeout -> DEADLINE_EXCEEDED, ConnectionLost -> UNAVAILABLE)
            raise type(cause)(
                f"outcome unknown ({cause.code}): not in the statement yet; retry with the same id later",
                code=cause.code,
                details={"retry_after": self.config.unknown_settle, "outcome": "unknown"},
                msg_type=cause.msg_type,
            ) from cause
        return await self.record_found(call, found)

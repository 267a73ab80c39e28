"""The gateway's operations, independent of gRPC: transfers, withdrawals, balance, client-token calls.

Money calls follow one rule: at most one `paymentagent_transfer` (or `paymentagent_withdraw`) per
PenPay operation id, ever. The journal row is committed before the frame leaves; a row whose outcome
is unknown is resolved through the agent's `statement` (the operation id is in the description)
before anything else; concurrent calls with one id in this process share one attempt (single-flight);
across processes the row's primary key decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError

from deriv_gateway import foreign_answers
from deriv_gateway import journal as jn
from deriv_gateway.config import GatewayConfig
from deriv_gateway.connection import ClientSession, DerivConnection, Subscription
from deriv_gateway.lease import Lease
from deriv_gateway.logs import get_logger
from deriv_gateway.protocol import errors
from deriv_gateway.protocol.messages import (
    StatementMatch,
    currency_digits,
    find_in_statement,
    from_wire_amount,
    reference,
    statement_count,
    transfer_fields,
    withdraw_fields,
)
from deriv_gateway.request_rules import (
    InvalidRequest,
    check_agent_currency,
    check_agent_limits,
    check_amount,
    check_client_token,
    check_loginid,
    check_not_the_agent,
    check_operation_id,
    check_verification_code,
)
from deriv_gateway.statement_batch import StatementBatcher
from deriv_gateway.statement_pages import StatementLine, page_size, statement_lines

log = get_logger("deriv_gateway.service")

STATEMENT_PAGE = 100
_REFERENCE = re.compile(r"[A-Za-z0-9-]{1,64}")
SWEEP_PAGE = 100

# `request("statement", fields)` on the agent's connection or on a client's own session
StatementRequest = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class OperationConflict(Exception):
    """The operation id was used before with different parameters."""


class OperationNotExecuted(Exception):
    """resolve_only: the operation did not execute at Deriv (and the journal now says so)."""


@dataclass(frozen=True, slots=True)
class MoneyResult:
    operation_id: str
    deriv_transaction_id: int
    client_loginid: str
    amount_cents: int
    currency: str
    counterparty_name: str
    replayed: bool
    resolved_from_statement: bool


@dataclass(frozen=True, slots=True)
class Balance:
    loginid: str
    cents: int
    currency: str


class DerivGateway:
    def __init__(self, config: GatewayConfig, journal: jn.Journal, lease: Lease) -> None:
        self.config = config
        self.journal = journal
        self.lease = lease
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
        # unknown outcomes looked up in the agent's statement together (a drop makes many at once)
        self.statements = StatementBatcher(
            lambda wanted, since: self._scan_statement(wanted, since, self.agent.request), self._agent_ready
        )
        # operation key -> (mode, attempt) for single-flight (see _single_flight)
        self._inflight: dict[str, tuple[str, asyncio.Future[MoneyResult]]] = {}
        # the token the journal's fence was raised to in this term (None: not yet)
        self._fenced_token: int | None = None
        self._fence_event = asyncio.Event()
        self._term_task: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Queue[Balance]] = set()
        # The agent's balance stream, open while someone watches (WatchBalance): Deriv pushes a
        # balance message after every transfer, which cost ~8% of the gateway's CPU per Transfer
        # with nobody reading it (bench/README.md).
        self.balance: Balance | None = None
        self._balance_stream: Subscription | None = None
        self._balance_lock = asyncio.Lock()
        self._balance_closing: asyncio.Task[None] | None = None
        self._leadership_lock = asyncio.Lock()
        self.leadership_changes = 0

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.lease.on_change(self._on_leadership)
        await self.lease.start()

    async def stop(self) -> None:
        await self.lease.stop()
        await self._end_term()
        await self.agent.close()
        for queue in list(self._watchers):
            queue.put_nowait(None)  # type: ignore[arg-type]

    async def _on_leadership(self, leader: bool, token: int | None) -> None:
        async with self._leadership_lock:
            self.leadership_changes += 1
            await self._end_term()
            if leader:
                log.info("gateway.leader", fence=token)
                await self.agent.start()
                if token is not None:
                    self._term_task = asyncio.create_task(self._run_term(token), name="gateway-term")
            else:
                log.warning("gateway.standby", fence=token)
                await self.agent.close()

    async def _end_term(self) -> None:
        self._fenced_token = None
        task, self._term_task = self._term_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def is_leader(self) -> bool:
        return self.lease.is_leader

    @property
    def serving(self) -> bool:
        """Leader, connected, and the journal's fence raised to this term's token."""
        return self.lease.is_leader and self.agent.ready and self._fenced_token == self.lease.token

    def _token(self) -> int:
        token = self.lease.token
        if not self.lease.is_leader or token is None:
            raise errors.NotLeader("this gateway is on standby (it does not hold the lease)")
        return token

    async def _agent_ready(self) -> None:
        try:
            await self.agent.wait_ready(self.config.request_timeout)
        except TimeoutError:
            raise errors.NotConnected("the agent connection to Deriv is down") from None

    def _digits(self, currency: str) -> int:
        return currency_digits(self.agent.website_status, currency)

    def _check_agent_currency(self, currency: str) -> None:
        """After `_agent_ready`: the agent's account currency is known from its authorization."""
        check_agent_currency(currency, self.agent.authorization.get("currency"))

    # --- balance ---------------------------------------------------------------------

    def _on_balance(self, message: dict[str, Any]) -> None:
        body = message.get("balance") or {}
        currency = str(body.get("currency") or "USD")
        try:
            cents = from_wire_amount(body.get("balance"), self._digits(currency))
        except ValueError:
            log.warning("gateway.bad_balance_frame")
            return
        self.balance = Balance(str(body.get("loginid") or self.agent.loginid or ""), cents, currency)
        for queue in list(self._watchers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(self.balance)

    async def get_balance(self) -> Balance:
        self._token()
        await self._agent_ready()
        message = await self.agent.request("balance")
        body = message["balance"]
        currency = str(body["currency"])
        return Balance(
            str(body["loginid"]), from_wire_amount(body["balance"], self._digits(currency)), currency
        )

    async def watch_balance(self) -> AsyncIterator[Balance]:
        self._token()
        queue: asyncio.Queue[Balance] = asyncio.Queue(maxsize=1000)
        await self._open_balance_stream()  # its first message (the balance now) sets self.balance
        self._watchers.add(queue)
        try:
            if self.balance is not None:
                yield self.balance
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            self._watchers.discard(queue)
            if not self._watchers:
                # not awaited here: a generator closed by a cancelled RPC may not await in finally
                # (the task is kept: the loop holds only a weak reference to it)
                self._balance_closing = asyncio.get_running_loop().create_task(self._close_balance_stream())

    async def _open_balance_stream(self) -> None:
        async with self._balance_lock:
            if self._balance_stream is not None:
                return
            self._balance_stream = await self.agent.subscribe("balance", {}, self._on_balance)

    async def _close_balance_stream(self) -> None:
        async with self._balance_lock:
            stream = self._balance_stream
            if stream is None or self._watchers:
                return
            self._balance_stream, self.balance = None, None  # not kept current any more
            await self.agent.unsubscribe(stream)

    # --- client-token calls (short-lived connections) --------------------------------

    def _client(self, token: str) -> ClientSession:
        check_client_token(token)
        return ClientSession(
            self.config.ws_url,
            self.config.app_id,
            token,
            timeout=self.config.client_timeout,
            compression=self.config.compression,
            observer=self.config.frame_observer,
        )

    async def authorize(self, token: str) -> dict[str, Any]:
        self._token()
        async with self._client(token) as session:
            return session.authorization

    async def get_settings(self, token: str) -> tuple[str, dict[str, Any]]:
        self._token()
        async with self._client(token) as session:
            message = await session.request("get_settings")
            return session.loginid, message.get("get_settings") or {}

    async def request_withdrawal_code(
        self, token: str, amount_cents: int | None = None, currency: str | None = None
    ) -> str:
        check_client_token(token)
        if amount_cents is not None or currency is not None:
            check_amount(amount_cents or 0, currency or "")
        self._token()
        await self._agent_ready()
        if currency is not None:
            self._check_agent_currency(currency)
        async with self._client(token) as session:
            email = session.authorization.get("email")
            if not email:
                raise errors.DerivError("the account has no email address", code="InvalidEmail")
            params: dict[str, Any] = {"pa_loginid": self.agent.loginid}
            if amount_cents and currency:
                params["pa_amount"] = float(amount_cents) / 10 ** self._digits(currency)
                params["pa_currency"] = currency
            await session.request(
                "verify_email", {"type": "paymentagent_withdraw", "url_parameters": params}, value=email
            )
            return session.loginid

    # --- money: single-flight ----------------------------------------------------------

    async def _single_flight(
        self, key: str, mode: str, factory: Callable[[], Awaitable[MoneyResult]]
    ) -> MoneyResult:
        """One attempt per operation in this process: calls in the same mode share it; a call in
        another mode (send / resolve / sweep) waits for it to end, so they never overlap.

        The attempt is a task of its own, awaited through a shield: a cancelled caller (an RPC
        cancelled by its client) stops waiting, the attempt runs on to its end, so a journal row is
        never abandoned half-way; nothing more needs shielding around this call.
        """
        while True:
            current = self._inflight.get(key)
            if current is None:
                break
            current_mode, existing = current
            if current_mode == mode:
                return await asyncio.shield(existing)
            await asyncio.wait([existing])
        attempt: asyncio.Future[MoneyResult] = asyncio.ensure_future(factory())
        self._inflight[key] = (mode, attempt)
        attempt.add_done_callback(partial(self._attempt_ended, key))
        return await asyncio.shield(attempt)

    def _attempt_ended(self, key: str, attempt: asyncio.Future[MoneyResult]) -> None:
        current = self._inflight.get(key)
        if current is not None and current[1] is attempt:
            del self._inflight[key]
        if not attempt.cancelled():
            attempt.exception()  # mark retrieved: coalesced callers may be gone

    async def transfer(
        self, transfer_id: str, loginid: str, amount_cents: int, currency: str, *, resolve_only: bool = False
    ) -> MoneyResult:
        check_operation_id("transfer_id", transfer_id)
        check_loginid("client_loginid", loginid)
        check_amount(amount_cents, currency)
        self._token()
        key = f"transfer:{transfer_id}"
        factory = (
            partial(self._resolve_only, "transfer", transfer_id, loginid.upper(), amount_cents, currency, "")
            if resolve_only
            else partial(self._transfer, transfer_id, loginid.upper(), amount_cents, currency)
        )
        return await self._single_flight(key, "resolve" if resolve_only else "send", factory)

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
        self._token()
        key = f"withdraw:{withdrawal_id}"
        factory = (
            partial(self._resolve_only, "withdraw", withdrawal_id, None, amount_cents, currency, token)
            if resolve_only
            else partial(self._withdraw, withdrawal_id, token, code, amount_cents, currency)
        )
        return await self._single_flight(key, "resolve" if resolve_only else "send", factory)

    # --- money: the journal protocol -------------------------------------------------

    async def _claim(
        self,
        operation_id: str,
        kind: str,
        loginid: str,
        cents: int,
        currency: str,
        description: str,
        token: int,
    ) -> tuple[bool, jn.Operation]:
        try:
            return await self.journal.claim(
                operation_id=operation_id,
                kind=kind,
                client_loginid=loginid,
                amount_cents=cents,
                currency=currency,
                description=description,
                token=token,
            )
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader has written to the journal") from None

    def _check_limits(self, cents: int, currency: str) -> None:
        """Deriv refuses a new operation outside the agent's limits: refused before any row or frame."""
        check_agent_limits(cents, currency, self.config.transfer_min_cents, self.config.transfer_max_cents)

    async def _transfer(self, transfer_id: str, loginid: str, cents: int, currency: str) -> MoneyResult:
        # the usual case (fence raised, agent connected) without a coroutine for each wait
        token = self._token()
        if self._fenced_token != token:
            token = await self._term_token()
        if not self.agent.usable:
            await self._agent_ready()
        self._check_agent_currency(currency)
        try:
            self._check_limits(cents, currency)
            check_not_the_agent("client_loginid", loginid, self.agent.loginid)
        except InvalidRequest:
            # an operation already journaled (sent under earlier limits, say) is settled, never refused
            if await self.journal.get(transfer_id) is None:
                raise
        description = reference(transfer_id, self.config.reference_prefix)
        created, row = await self._claim(
            transfer_id, "transfer", loginid, cents, currency, description, token
        )
        if not created:
            if not row.same_request("transfer", loginid, cents, currency):
                raise OperationConflict(f"transfer id {transfer_id} was used for a different transfer")
            settled = await self._settle_existing(row, token)
            if settled is not None:
                return settled
        fields = transfer_fields(loginid, cents, currency, description, self._digits(currency))

        async def send() -> dict[str, Any]:
            return await self.agent.request("paymentagent_transfer", fields)

        return await self._send_journaled(
            transfer_id, "transfer", loginid, cents, currency, description, token, send
        )

    async def _withdraw(
        self, withdrawal_id: str, token_value: str, code: str, cents: int, currency: str
    ) -> MoneyResult:
        token = await self._term_token()
        existing = await self.journal.get(withdrawal_id)
        if existing is not None and existing.kind == "withdraw" and existing.status in (jn.DONE, jn.FAILED):
            if existing.amount_cents != cents or existing.currency != currency:
                raise OperationConflict(f"withdrawal id {withdrawal_id} was used for a different withdrawal")
            return self._replay(existing)
        await self._agent_ready()
        self._check_agent_currency(currency)
        agent_loginid = self.agent.loginid
        if not agent_loginid:
            raise errors.NotConnected("agent account not authorized yet")
        description = reference(withdrawal_id, self.config.reference_prefix)
        # a journaled withdrawal (sent under earlier limits, say) is settled, never refused
        if existing is None:
            self._check_limits(cents, currency)
        async with self._client(token_value) as session:
            loginid = session.loginid
            if existing is None:
                check_not_the_agent("client_token", loginid, agent_loginid)
            created, row = await self._claim(
                withdrawal_id, "withdraw", loginid, cents, currency, description, token
            )
            if not created:
                if not row.same_request("withdraw", loginid, cents, currency):
                    raise OperationConflict(
                        f"withdrawal id {withdrawal_id} was used for a different withdrawal"
                    )
                settled = await self._settle_existing(row, token)
                if settled is not None:
                    return settled
            fields = withdraw_fields(
                agent_loginid, cents, currency, code, description, self._digits(currency)
            )

            async def send() -> dict[str, Any]:
                if not self.lease.is_leader:
                    raise errors.NotLeader("lease lost")
                return await session.request("paymentagent_withdraw", fields)

            return await self._send_journaled(
                withdrawal_id, "withdraw", loginid, cents, currency, description, token, send
            )

    def _replay(self, row: jn.Operation) -> MoneyResult:
        if row.status == jn.FAILED:
            raise errors.decode_error(
                {"error": {"code": row.error_code or "DerivError", "message": row.error_message or ""}}
            )
        result = row.result or {}
        return MoneyResult(
            operation_id=row.operation_id,
            deriv_transaction_id=int(row.deriv_transaction_id or 0),
            client_loginid=row.client_loginid,
            amount_cents=row.amount_cents,
            currency=row.currency,
            counterparty_name=str(result.get("counterparty_name") or ""),
            replayed=True,
            resolved_from_statement=bool(result.get("resolved_from_statement")),
        )

    async def _take_over(self, row: jn.Operation, token: int) -> None:
        try:
            await self.journal.take_over(row.operation_id, token)
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader owns this operation") from None

    def _unknown(self, row: jn.Operation, age: float) -> errors.OutcomeUnknown:
        wait = self.config.unknown_settle - age
        return errors.OutcomeUnknown(
            f"outcome of operation {row.operation_id} is not yet known; retry in {wait:.0f}s",
            code="OutcomeUnknown",
            details={"retry_after": wait},
        )

    async def _settle_existing(self, row: jn.Operation, token: int) -> MoneyResult | None:
        """For a row that already exists: the final result, or None if it may be (re)sent now."""
        if row.status in (jn.DONE, jn.FAILED):
            return self._replay(row)
        if row.status == jn.NOT_SENT:
            await self.journal.resend(row.operation_id, token, jn.NOT_SENT)
            return None
        # SENDING, and not by a request of this process (single-flight): outcome unknown.
        await self._take_over(row, token)
        log.info("gateway.resolving_unknown", operation_id=row.operation_id, kind=row.kind)
        scanned_at = datetime.now(UTC)
        try:
            found = await self._resolve(row.description, row.created_at)
        except errors.DerivError as exc:
            # The earlier frame may have executed: the caller must hear "outcome unknown", never a
            # RateLimit / not-connected of the lookup, which reads as "held back, nothing moved".
            raise errors.OutcomeUnknown(
                f"outcome of operation {row.operation_id} unknown: the statement is unavailable "
                f"({exc.code}); retry later",
                code="OutcomeUnknown",
                details=_retry_details(exc),
            ) from exc
        if found is not None:
            return await self._record_found(
                row.operation_id, row.kind, row.client_loginid, row.amount_cents, row.currency, token, found
            )
        age = _age(row, scanned_at)
        if age < self.config.unknown_settle:
            raise self._unknown(row, age)
        # Not in the statement long after the last send: it never executed. Send again.
        log.warning("gateway.unknown_resolved_absent", operation_id=row.operation_id, attempts=row.attempts)
        await self.journal.resend(row.operation_id, token, jn.SENDING)
        return None

    # --- money: resolve without sending ------------------------------------------------

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
        token = await self._term_token()
        row = await self.journal.get(operation_id)
        if row is not None:
            self._check_same(row, kind, loginid, cents, currency)
            if row.status in (jn.DONE, jn.FAILED):
                return self._replay(row)
            if row.status == jn.NOT_SENT:
                raise OperationNotExecuted(f"operation {operation_id} was not executed (journal: NOT_SENT)")
        await self._agent_ready()
        self._check_agent_currency(currency)  # else a statement match would be journaled in it
        if kind == "withdraw" and client_token:
            async with self._client(client_token) as session:
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
            await self._take_over(row, token)
            description, since = row.description, row.created_at
        else:
            # No row: the gateway never claimed it, so never sent it. The statement is still read
            # (a lost journal row must not turn into a second execution), as far back as the lookback.
            description = reference(operation_id, self.config.reference_prefix)
            since = datetime.now(UTC)
        scanned_at = datetime.now(UTC)
        try:
            if request is None:
                found = await self._resolve(description, since)
            else:
                found = (await self._scan_statement({description}, since, request)).get(description)
        except errors.DerivError as exc:
            # The statement call was refused (RateLimit is a NotExecuted of *that* call): it says
            # nothing about the operation, which must not be reported as not executed.
            raise errors.OutcomeUnknown(
                f"the statement is unavailable ({exc.code}); retry later",
                code="OutcomeUnknown",
                details=_retry_details(exc),
            ) from exc
        if found is not None:
            if row is not None:
                return await self._record_found(
                    operation_id, kind, row.client_loginid, cents, currency, token, found
                )
            return await self._record_unjournaled(kind, operation_id, loginid, cents, currency, token, found)
        if row is None:
            raise OperationNotExecuted(f"operation {operation_id} was never sent (no journal row)")
        age = _age(row, scanned_at)
        if age < self.config.unknown_settle:
            raise self._unknown(row, age)
        await self._mark_not_executed(row, token, age)
        raise OperationNotExecuted(
            f"operation {operation_id} is not in the statement {age:.0f}s after it was sent: not executed"
        )

    async def _mark_not_executed(self, row: jn.Operation, token: int, age: float) -> None:
        """SENDING and absent from the statement after the settle window -> NOT_SENT (may be sent later)."""
        try:
            await self.journal.finish(
                row.operation_id,
                token,
                jn.NOT_SENT,
                error_code="NOT_EXECUTED",
                error_message=f"not in the statement {age:.0f}s after the last send",
            )
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader owns this operation") from None
        log.warning("gateway.unknown_resolved_absent", operation_id=row.operation_id, attempts=row.attempts)

    async def _record_unjournaled(
        self,
        kind: str,
        operation_id: str,
        loginid: str | None,
        cents: int,
        currency: str,
        token: int,
        found: StatementMatch,
    ) -> MoneyResult:
        self._check_line_is_ours(operation_id, kind, loginid, cents, found)
        # the client: the other side of the agent's line (a transfer goes to it, a withdrawal comes from it)
        counterparty = found.to_loginid if kind == "transfer" else found.from_loginid
        client = loginid or counterparty or ""
        result = {"counterparty_name": "", "resolved_from_statement": True, "longcode": found.longcode[:200]}
        try:
            created = await self.journal.record_unjournaled(
                operation_id=operation_id,
                kind=kind,
                client_loginid=client,
                amount_cents=cents,
                currency=currency,
                description=reference(operation_id, self.config.reference_prefix),
                token=token,
                deriv_transaction_id=found.transaction_id,
                result=result,
            )
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader has written to the journal") from None
        if not created:
            raise errors.OutcomeUnknown(
                f"operation {operation_id} appeared in the journal meanwhile; retry", code="OutcomeUnknown"
            )
        log.error("gateway.executed_without_journal_row", operation_id=operation_id, kind=kind)
        return MoneyResult(operation_id, found.transaction_id, client, cents, currency, "", False, True)

    # --- leadership: the fence and the sweep ---------------------------------------------

    async def _term_token(self) -> int:
        """This term's token, once the journal's fence has been raised to it.

        A new leader does nothing with the journal before that: afterwards an old leader can no
        longer claim, so the sweep sees every row a previous leader could still leave SENDING.
        """
        token = self._token()
        if self._fenced_token == token:
            return token
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout
        while self._fenced_token != token:
            if loop.time() > deadline:
                raise errors.NotLeader("this gateway is taking over (journal fence not raised yet)")
            self._fence_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fence_event.wait(), max(0.0, deadline - loop.time()))
            token = self._token()
        return token

    def _holds(self, token: int) -> bool:
        return self.lease.is_leader and self.lease.token == token

    async def _run_term(self, token: int) -> None:
        """A new leader: raise the journal's fence, then resolve what earlier leaders left SENDING."""
        started = datetime.now(UTC)
        delay = 0.1
        while self._holds(token):
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
        self._fenced_token = token
        self._fence_event.set()
        log.info("gateway.fence_raised", fence=token)
        await self._sweep(token, started)

    async def _sweep(self, token: int, started: datetime) -> None:
        """Every row left SENDING before this term: found in the statement -> DONE; absent after the
        settle window -> NOT_SENT (a later request sends it); inside the window -> looked at again
        when it ends. Never sends a money frame."""
        delay = 1.0
        while self._holds(token):
            retry_in: float | None = None
            after = ""
            try:
                await self._agent_ready()
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
        scanned_at = datetime.now(UTC)
        found = await self._scan_statement({row.description for row in rows}, since, self.agent.request)
        retry_in: float | None = None
        for row in rows:

            async def settle(row: jn.Operation = row) -> MoneyResult:
                return await self._sweep_one(row.operation_id, token, found.get(row.description), scanned_at)

            try:
                await self._single_flight(f"{row.kind}:{row.operation_id}", "sweep", settle)
            except errors.OutcomeUnknown as exc:
                wait = float(exc.details.get("retry_after") or self.config.unknown_settle)
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
        await self._take_over(row, token)
        if found is not None:
            return await self._record_found(
                row.operation_id, row.kind, row.client_loginid, row.amount_cents, row.currency, token, found
            )
        age = _age(row, scanned_at)
        if age < self.config.unknown_settle:
            raise self._unknown(row, age)
        await self._mark_not_executed(row, token, age)
        raise OperationNotExecuted(operation_id)

    # --- money: the statement --------------------------------------------------------

    async def find_statement_line(self, reference: str, since: datetime) -> StatementMatch | None:
        """Read-only: the agent's statement line carrying `reference` (operators' evidence checks).
        Joins the batched statement reads; never sends a money frame."""
        if not _REFERENCE.fullmatch(reference):
            raise errors.InputValidationFailed("reference: 1 to 64 of A-Z a-z 0-9 and '-'")
        self._token()
        return await self.statements.find(reference, since)

    async def list_statement(
        self, date_from: int, date_to: int, offset: int, limit: int
    ) -> tuple[list[StatementLine], bool]:
        """Read-only: one page of the agent's statement in [date_from, date_to] (Unix seconds), and
        whether it was full (more may follow). Reconciliation reads Deriv's records this way."""
        if date_from < 0 or date_to < date_from or offset < 0:
            raise errors.InputValidationFailed("date range or offset out of bounds")
        self._token()
        await self._agent_ready()
        size = page_size(limit)
        message = await self.agent.request(
            "statement",
            {"description": 1, "limit": size, "offset": offset, "date_from": date_from, "date_to": date_to},
        )
        currency = str(self.agent.authorization.get("currency") or "USD")
        lines = statement_lines(message, self._digits(currency))
        return lines, statement_count(message) >= size

    async def _resolve(self, description: str, since: datetime) -> StatementMatch | None:
        """Search the agent's statement for the reference (paged, from shortly before the row was
        created), in one read with the other lookups waiting for one."""
        return await self.statements.find(description, since)

    async def _scan_statement(
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

    def _check_line_is_ours(
        self, operation_id: str, kind: str, loginid: str | None, cents: int, found: StatementMatch
    ) -> None:
        """A statement line carrying our reference proves our operation executed only if it is about
        it: our amount, our client, the agent. Otherwise it is someone else's line (or a server that
        answers with its own): an unknown outcome and an alert, never "executed"."""
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

    async def _record_found(
        self,
        operation_id: str,
        kind: str,
        loginid: str,
        cents: int,
        currency: str,
        token: int,
        found: StatementMatch,
    ) -> MoneyResult:
        self._check_line_is_ours(operation_id, kind, loginid, cents, found)
        result = {"counterparty_name": "", "resolved_from_statement": True, "longcode": found.longcode[:200]}
        try:
            await self.journal.finish(
                operation_id, token, jn.DONE, deriv_transaction_id=found.transaction_id, result=result
            )
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader owns this operation") from None
        log.info("gateway.resolved_from_statement", operation_id=operation_id, kind=kind)
        return MoneyResult(operation_id, found.transaction_id, loginid, cents, currency, "", False, True)

    async def _send_journaled(
        self,
        operation_id: str,
        kind: str,
        loginid: str,
        cents: int,
        currency: str,
        description: str,
        token: int,
        send: Callable[[], Awaitable[dict[str, Any]]],
    ) -> MoneyResult:
        """The row is SENDING and ours: send once, then record whatever is known."""
        started = time.monotonic()
        try:
            reply = await send()
        except errors.NotExecuted as exc:
            await self._finish_quietly(operation_id, token, jn.NOT_SENT, exc)
            raise
        except errors.OutcomeUnknown as exc:
            log.warning("gateway.outcome_unknown", operation_id=operation_id, kind=kind, code=exc.code)
            return await self._resolve_after_failure(
                operation_id, kind, loginid, cents, currency, description, token, exc
            )
        except errors.DerivError as exc:
            await self._finish_quietly(operation_id, token, jn.FAILED, exc)
            raise
        call = "paymentagent_transfer" if kind == "transfer" else "paymentagent_withdraw"
        txn = reply.get("transaction_id")
        if not isinstance(txn, int):
            # "1" without a transaction id would be a dry run; the gateway never sends one
            exc2 = errors.UnexpectedReply(f"{call} reply without transaction_id")
            return await self._resolve_after_failure(
                operation_id, kind, loginid, cents, currency, description, token, exc2
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
            exc3 = errors.ForeignAnswer(f"{call} reply names client {to}, not {loginid}")
            return await self._resolve_after_failure(
                operation_id, kind, loginid, cents, currency, description, token, exc3
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
            if await self._still_ours(operation_id, token):
                # not deposed: the journal refused the transaction id, another operation's already
                foreign_answers.report(
                    f"the {call} reply carries transaction id {txn}, another operation's",
                    reply,
                    operation_id=operation_id,
                    operation_kind=kind,
                    deriv_transaction_id=txn,
                )
                exc4 = errors.ForeignAnswer(f"{call} reply carries another operation's transaction id {txn}")
                return await self._resolve_after_failure(
                    operation_id, kind, loginid, cents, currency, description, token, exc4
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
        return MoneyResult(operation_id, txn, loginid, cents, currency, name, False, False)

    async def _still_ours(self, operation_id: str, token: int) -> bool:
        """After a failed outcome write: the row is still SENDING under our token (we were not deposed)."""
        row = await self.journal.get(operation_id)
        return row is not None and row.status == jn.SENDING and row.fencing_token == token

    async def _resolve_after_failure(
        self,
        operation_id: str,
        kind: str,
        loginid: str,
        cents: int,
        currency: str,
        description: str,
        token: int,
        cause: errors.DerivError,
    ) -> MoneyResult:
        """The frame left and no definite answer came back: find it in the statement, now."""
        try:
            found = await self._resolve(description, datetime.now(UTC))
        except errors.DerivError as exc:
            raise errors.OutcomeUnknown(
                f"outcome unknown ({cause.code}) and the statement is unavailable ({exc.code}); retry later",
                code="OutcomeUnknown",
                details=_retry_details(exc),
            ) from exc
        if found is None:
            # keep the cause's type and code (Timeout -> DEADLINE_EXCEEDED, ConnectionLost -> UNAVAILABLE)
            raise type(cause)(
                f"outcome unknown ({cause.code}): not in the statement yet; retry with the same id later",
                code=cause.code,
                details={"retry_after": self.config.unknown_settle, "outcome": "unknown"},
                msg_type=cause.msg_type,
            ) from cause
        return await self._record_found(operation_id, kind, loginid, cents, currency, token, found)

    async def _finish_quietly(
        self, operation_id: str, token: int, status: str, exc: errors.DerivError
    ) -> None:
        try:
            await self.journal.finish(
                operation_id, token, status, error_code=exc.code, error_message=exc.message
            )
        except jn.StaleFencingToken:
            log.error("gateway.deposed_after_send", operation_id=operation_id)


def _age(row: jn.Operation, scanned_at: datetime) -> float:
    """Seconds from the row's last send (updated_at, not moved by a take-over) to the start of the
    statement scan that did not find it: "absent" only counts for a scan begun a settle window after
    the send, however long the caller waited between that scan and this check."""
    return (scanned_at - row.updated_at).total_seconds()


def _retry_details(statement_error: errors.DerivError) -> dict[str, Any] | None:
    """When a refused statement lookup may be asked again: a RateLimit (ours says when; Deriv's does
    not, so a minute), so the caller waits instead of spending an attempt on each refusal."""
    if not isinstance(statement_error, errors.RateLimit):
        return None
    retry_after = (statement_error.details or {}).get("retry_after")
    return {"retry_after": float(retry_after) if isinstance(retry_after, int | float) else 60.0}

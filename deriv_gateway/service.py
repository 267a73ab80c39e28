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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from deriv_gateway import journal as jn
from deriv_gateway.config import GatewayConfig
from deriv_gateway.connection import ClientSession, DerivConnection
from deriv_gateway.lease import Lease
from deriv_gateway.logs import get_logger
from deriv_gateway.protocol import errors
from deriv_gateway.protocol.messages import (
    LOGINID_PATTERN,
    OPERATION_ID_PATTERN,
    StatementMatch,
    currency_digits,
    find_in_statement,
    from_wire_amount,
    reference,
    statement_count,
    transfer_fields,
    withdraw_fields,
)

log = get_logger("deriv_gateway.service")

STATEMENT_PAGE = 100


class InvalidRequest(ValueError):
    """The gRPC request itself is malformed (field -> reason)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class OperationConflict(Exception):
    """The operation id was used before with different parameters."""


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
        self._inflight: dict[str, asyncio.Future[MoneyResult]] = {}
        self._watchers: set[asyncio.Queue[Balance]] = set()
        self.balance: Balance | None = None
        self._subscribed = False
        self._leadership_lock = asyncio.Lock()
        self.leadership_changes = 0

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if not self._subscribed:
            await self.agent.subscribe("balance", {}, self._on_balance)
            self._subscribed = True
        self.lease.on_change(self._on_leadership)
        await self.lease.start()

    async def stop(self) -> None:
        await self.lease.stop()
        await self.agent.close()
        for queue in list(self._watchers):
            queue.put_nowait(None)  # type: ignore[arg-type]

    async def _on_leadership(self, leader: bool, token: int | None) -> None:
        async with self._leadership_lock:
            self.leadership_changes += 1
            if leader:
                log.info("gateway.leader", fence=token)
                await self.agent.start()
            else:
                log.warning("gateway.standby", fence=token)
                await self.agent.close()

    @property
    def is_leader(self) -> bool:
        return self.lease.is_leader

    @property
    def serving(self) -> bool:
        return self.lease.is_leader and self.agent.ready

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

    # --- client-token calls (short-lived connections) --------------------------------

    def _client(self, token: str) -> ClientSession:
        if not token:
            raise InvalidRequest("client_token", "required")
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
        self._token()
        await self._agent_ready()
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

    async def _single_flight(self, key: str, factory: Callable[[], Awaitable[MoneyResult]]) -> MoneyResult:
        existing = self._inflight.get(key)
        if existing is not None:
            return await asyncio.shield(existing)
        future: asyncio.Future[MoneyResult] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await factory()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # mark retrieved: coalesced callers may be gone
            raise
        else:
            future.set_result(result)
            return result
        finally:
            self._inflight.pop(key, None)

    async def transfer(self, transfer_id: str, loginid: str, amount_cents: int, currency: str) -> MoneyResult:
        if not OPERATION_ID_PATTERN.match(transfer_id or ""):
            raise InvalidRequest("transfer_id", "must match ^[0-9A-Za-z-]{1,64}$")
        if not LOGINID_PATTERN.match(loginid or ""):
            raise InvalidRequest("client_loginid", "must match ^[A-Za-z]+[0-9]+$")
        if amount_cents <= 0:
            raise InvalidRequest("amount.amount_cents", "must be positive")
        if not currency:
            raise InvalidRequest("amount.currency", "required")
        self._token()
        # shielded: a cancelled RPC must not abandon a journal row half-way
        return await asyncio.shield(
            self._single_flight(
                f"transfer:{transfer_id}",
                lambda: self._transfer(transfer_id, loginid.upper(), amount_cents, currency),
            )
        )

    async def withdraw(
        self, withdrawal_id: str, token: str, code: str, amount_cents: int, currency: str
    ) -> MoneyResult:
        if not OPERATION_ID_PATTERN.match(withdrawal_id or ""):
            raise InvalidRequest("withdrawal_id", "must match ^[0-9A-Za-z-]{1,64}$")
        if not code:
            raise InvalidRequest("verification_code", "required")
        if amount_cents <= 0:
            raise InvalidRequest("amount.amount_cents", "must be positive")
        if not currency:
            raise InvalidRequest("amount.currency", "required")
        self._token()
        return await asyncio.shield(
            self._single_flight(
                f"withdraw:{withdrawal_id}",
                lambda: self._withdraw(withdrawal_id, token, code, amount_cents, currency),
            )
        )

    # --- money: the journal protocol -------------------------------------------------

    async def _transfer(self, transfer_id: str, loginid: str, cents: int, currency: str) -> MoneyResult:
        token = self._token()
        await self._agent_ready()
        description = reference(transfer_id, self.config.reference_prefix)
        created, row = await self.journal.claim(
            operation_id=transfer_id,
            kind="transfer",
            client_loginid=loginid,
            amount_cents=cents,
            currency=currency,
            description=description,
            token=token,
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
        token = self._token()
        existing = await self.journal.get(withdrawal_id)
        if existing is not None and existing.kind == "withdraw" and existing.status in (jn.DONE, jn.FAILED):
            if existing.amount_cents != cents or existing.currency != currency:
                raise OperationConflict(f"withdrawal id {withdrawal_id} was used for a different withdrawal")
            return self._replay(existing)
        await self._agent_ready()
        agent_loginid = self.agent.loginid
        if not agent_loginid:
            raise errors.NotConnected("agent account not authorized yet")
        description = reference(withdrawal_id, self.config.reference_prefix)
        async with self._client(token_value) as session:
            loginid = session.loginid
            created, row = await self.journal.claim(
                operation_id=withdrawal_id,
                kind="withdraw",
                client_loginid=loginid,
                amount_cents=cents,
                currency=currency,
                description=description,
                token=token,
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

    async def _settle_existing(self, row: jn.Operation, token: int) -> MoneyResult | None:
        """For a row that already exists: the final result, or None if it may be (re)sent now."""
        if row.status in (jn.DONE, jn.FAILED):
            return self._replay(row)
        if row.status == jn.NOT_SENT:
            await self.journal.resend(row.operation_id, token, jn.NOT_SENT)
            return None
        # SENDING, and not by a request of this process (single-flight): outcome unknown.
        try:
            await self.journal.take_over(row.operation_id, token)
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader owns this operation") from None
        log.info("gateway.resolving_unknown", operation_id=row.operation_id, kind=row.kind)
        found = await self._resolve(row.description, row.created_at)
        if found is not None:
            return await self._record_found(
                row.operation_id, row.kind, row.client_loginid, row.amount_cents, row.currency, token, found
            )
        age = (datetime.now(UTC) - row.updated_at).total_seconds()
        if age < self.config.unknown_settle:
            raise errors.OutcomeUnknown(
                f"outcome of operation {row.operation_id} is not yet known; retry in "
                f"{self.config.unknown_settle - age:.0f}s",
                code="OutcomeUnknown",
                details={"retry_after": self.config.unknown_settle - age},
            )
        # Not in the statement long after the last send: it never executed. Send again.
        log.warning("gateway.unknown_resolved_absent", operation_id=row.operation_id, attempts=row.attempts)
        await self.journal.resend(row.operation_id, token, jn.SENDING)
        return None

    async def _resolve(self, description: str, since: datetime) -> StatementMatch | None:
        """Search the agent's statement for the reference (paged, from shortly before the row was created)."""
        await self._agent_ready()
        date_from = max(0, int(since.timestamp() - self.config.statement_lookback))
        offset = 0
        while True:
            message = await self.agent.request(
                "statement",
                {"description": 1, "limit": STATEMENT_PAGE, "offset": offset, "date_from": date_from},
            )
            match = find_in_statement(message, description)
            if match is not None:
                return match
            count = statement_count(message)
            if count < STATEMENT_PAGE:
                return None
            offset += count

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
        name = str(reply.get("client_to_full_name") or reply.get("paymentagent_name") or "")
        try:
            await self.journal.finish(
                operation_id,
                token,
                jn.DONE,
                deriv_transaction_id=txn,
                result={"counterparty_name": name, "client_to_loginid": reply.get("client_to_loginid")},
            )
        except jn.StaleFencingToken:
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

"""The gateway's REST transport: money calls for new-API accounts, under the same journal and lease.

The v3 path (service.DerivGateway) and this one share the write-ahead journal, the fencing token
and single-flight, so an operation id executes at most once whichever API carries it. What differs
is how an unknown outcome is resolved: Deriv's REST API keeps `request_id` (= the operation id)
unique, so a row left SENDING is looked up by request_id (DerivRestClient.lookup_*), and a lookup
that finds nothing may be followed by the same POST again: a POST that did run answers
RequestIDUsed and is then looked up, never executed twice.

Journal rows of REST clients name the client `@<nickname>` (the journal's client column holds a
loginid for v3 rows); amounts travel as decimal strings in the agent's currency.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial

from deriv_gateway import journal as jn
from deriv_gateway.balance_watch import Balance
from deriv_gateway.logs import get_logger
from deriv_gateway.money_call import MoneyCall, MoneyResult, OperationConflict, OperationNotExecuted
from deriv_gateway.protocol import errors
from deriv_gateway.protocol.messages import reference
from deriv_gateway.request_rules import InvalidRequest, check_amount, check_operation_id
from deriv_gateway.rest import DerivRestClient, RestResult
from deriv_gateway.service import DerivGateway

log = get_logger("deriv_gateway.transport_rest")

NICKNAME = re.compile(r"^[A-Za-z0-9_.\-]{1,31}$")
BEARER = re.compile(r"^[A-Za-z0-9._~+/=\-]{1,4096}$")
REST_CODE = re.compile(r"^[0-9]{6}$")
DIGITS = 2  # USD, the agent's currency; Deriv's REST amounts are decimal strings


SWEEP_PAGE = 100


def is_rest_client(client: str) -> bool:
    """A journal row of a REST client (its client column is `@<nickname>`, never a loginid)."""
    return client.startswith("@")


@contextlib.asynccontextmanager
async def agent_token_in_use() -> AsyncIterator[None]:
    """Deriv refusing the *agent's* token (revoked, expired, without the payment scope) is an
    operator's problem, not the customer's: nothing moved, so the call is unavailable (retried later
    with the same id), never a refusal that would fail the customer's payment for good."""
    try:
        yield
    except (errors.InvalidToken, errors.PermissionDenied) as exc:
        status = exc.details.get("http_status") if exc.details else None
        if status not in (401, 403):
            raise
        log.error("gateway.rest_agent_token_refused", status=status, code=exc.code)
        raise errors.ServiceUnavailable(
            "Deriv refused the payment agent's REST token; the operator must renew it",
            code="AgentTokenRefused",
        ) from None


def _check(field: str, value: str, pattern: re.Pattern[str], what: str) -> None:
    if not pattern.fullmatch(value):
        raise InvalidRequest(field, what)


Lookup = Callable[[], Awaitable[RestResult | None]]
Send = Callable[[], Awaitable[RestResult]]


def _amount(cents: int) -> str:
    return f"{Decimal(cents).scaleb(-DIGITS):.{DIGITS}f}"


@dataclass(frozen=True, slots=True)
class AgentProfile:
    agent_id: int
    currency: str
    nickname: str | None


class RestTransport:
    def __init__(self, gateway: DerivGateway, client: DerivRestClient, agent_token: str) -> None:
        self.gateway = gateway
        self.client = client
        self._agent_token = agent_token
        self._profile: AgentProfile | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Queue[Balance | None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self.latest: Balance | None = None

    def start(self) -> None:
        """Before the lease starts: each term sweeps the REST rows earlier leaders left SENDING."""
        self.gateway.lease.on_change(self._on_leadership)

    async def close(self) -> None:
        await self._stop_sweep()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await poller
        for queue in list(self._watchers):
            queue.put_nowait(None)
        await self.client.close()

    async def _stop_sweep(self) -> None:
        task, self._sweep_task = self._sweep_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _on_leadership(self, leader: bool, token: int | None) -> None:
        await self._stop_sweep()
        if leader and token is not None:
            self._sweep_task = asyncio.create_task(self._sweep(token), name="gateway-rest-sweep")

    async def profile(self) -> AgentProfile:
        """The agent's own id and currency (GET /agents/me), read once."""
        if self._profile is None:
            async with agent_token_in_use():
                data, _ = await self.client.call(
                    "GET", "/payment-agents/v1/agents/me", self._agent_token, call="paymentagent_details"
                )
            currencies = data.get("currencies") or [{}]
            self._profile = AgentProfile(
                int(data["id"]), str(currencies[0].get("currency") or "USD"), data.get("nickname")
            )
        return self._profile

    async def _check_currency(self, currency: str) -> None:
        profile = await self.profile()
        if currency != profile.currency:
            raise InvalidRequest("amount.currency", f"must be the agent's currency {profile.currency}")

    async def balance(self) -> Balance:
        self.gateway.term.token()
        async with agent_token_in_use():
            found = await self.client.balance(self._agent_token)
        profile = await self.profile()
        return Balance(f"@{profile.nickname or profile.agent_id}", found.minor, found.currency)

    async def authorize(self, client_token: str) -> tuple[str, str]:
        """(nickname, main wallet currency) of a client's token: what a binding needs to know.

        GET /account/v1/nickname wants the account_manage scope; /wallet/v1/wallets the payment one.
        """
        _check("client_token", client_token, BEARER, "must be a bearer token")
        self.gateway.term.token()
        data, _ = await self.client.call("GET", "/account/v1/nickname", client_token, call="authorize")
        nickname = data.get("nickname") if isinstance(data, dict) else None
        if not isinstance(nickname, str) or not nickname:
            raise errors.UnexpectedReply("no nickname in the answer", msg_type="authorize")
        wallet = await self.client.balance(client_token, wallet_type="main")
        return nickname, wallet.currency

    async def watch_balance(self) -> AsyncIterator[Balance]:
        """The balance now, then each change. One poller serves every watcher (the budget is per token)."""
        self.gateway.term.token()
        queue: asyncio.Queue[Balance | None] = asyncio.Queue(maxsize=100)
        self._watchers.add(queue)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_balance(), name="gateway-rest-balance")
        try:
            if self.latest is not None:
                yield self.latest
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            self._watchers.discard(queue)

    async def _poll_balance(self) -> None:
        interval = self.gateway.config.rest_balance_poll
        while self._watchers:
            wait = interval
            try:
                if self.gateway.is_leader:
                    balance = await self.balance()
                    if balance != self.latest:
                        self.latest = balance
                        for queue in list(self._watchers):
                            with contextlib.suppress(asyncio.QueueFull):
                                queue.put_nowait(balance)
            except errors.RateLimit as exc:
                wait = max(interval, float(exc.details.get("retry_after") or interval))
            except Exception as exc:
                code = exc.code if isinstance(exc, errors.DerivError) else type(exc).__name__
                log.warning("gateway.rest_balance_failed", error=code)
            await asyncio.sleep(wait)

    # ---- the sweep: REST rows left SENDING ----------------------------------------------------------

    async def _sweep(self, token: int) -> None:
        """Like the v3 sweep (which leaves REST rows alone), by request_id lookups on the agent's token
        (the agent may read both its transfers and withdrawals made to it). Never sends money."""
        started = self.gateway.clock.now()
        delay = 1.0
        while True:
            try:
                if await self.gateway.term.fenced() != token:
                    return
                retry_in = await self._sweep_once(token, started)
            except errors.NotLeader:
                return
            except Exception as exc:
                code = exc.code if isinstance(exc, errors.DerivError) else type(exc).__name__
                log.warning("gateway.rest_sweep_failed", error=code)
                retry_in, delay = delay, min(delay * 2, 30.0)
            if retry_in is None:
                log.info("gateway.rest_sweep_done", fence=token)
                return
            await asyncio.sleep(max(0.05, retry_in))

    async def _sweep_once(self, token: int, started: datetime) -> float | None:
        retry_in: float | None = None
        after = ""
        while True:
            rows = await self.gateway.journal.list_sending(SWEEP_PAGE, sent_before=started, after=after)
            if not rows:
                return retry_in
            after = rows[-1].operation_id
            for row in rows:
                if not is_rest_client(row.client_loginid):
                    continue
                settle = partial(self._sweep_one, row.operation_id, row.kind, token)
                flight = self.gateway.flights.run(f"{row.kind}:{row.operation_id}", "sweep", settle)
                try:
                    await asyncio.shield(flight)
                except errors.OutcomeUnknown as exc:
                    wait = float(exc.details.get("retry_after") or self.gateway.config.unknown_settle)
                    retry_in = wait if retry_in is None else min(retry_in, wait)
                except OperationNotExecuted:
                    pass

    async def _sweep_one(self, operation_id: str, kind: str, token: int) -> MoneyResult:
        gw = self.gateway
        row = await gw.journal.get(operation_id)
        if row is None or row.status != jn.SENDING:
            return MoneyResult(operation_id, 0, "", 0, "", "", True, False)  # settled meanwhile
        await gw.steps.take_over(row, token)
        lookup: Lookup
        if kind == "transfer":
            lookup = partial(self.client.lookup_transfer, self._agent_token, operation_id)
        else:
            lookup = partial(self.client.lookup_withdrawal, self._agent_token, operation_id)
        scanned_at = self.gateway.clock.now()
        found = await self._lookup(lookup, kind, operation_id)
        if found is not None:
            return await self._done(
                kind, operation_id, row.client_loginid, row.amount_cents, row.currency, token, found
            )
        age = (scanned_at - row.updated_at).total_seconds()
        if age < gw.config.unknown_settle:
            raise gw.steps.unknown(row, age)
        await gw.steps.mark_not_executed(row, token, age)
        raise OperationNotExecuted(operation_id)

    # ---- deposits ---------------------------------------------------------------------------------

    async def transfer(
        self, transfer_id: str, nickname: str, cents: int, currency: str, *, resolve_only: bool = False
    ) -> MoneyResult:
        check_operation_id("transfer_id", transfer_id)
        _check("client_nickname", nickname, NICKNAME, "must match ^[A-Za-z0-9_.-]{1,31}$")
        check_amount(cents, currency)
        self.gateway.term.token()
        client = f"@{nickname}"

        async def lookup() -> RestResult | None:
            return await self.client.lookup_transfer(self._agent_token, transfer_id)

        async def send() -> RestResult:
            async with agent_token_in_use():
                return await self._send_transfer(transfer_id, nickname, cents, currency)

        work = partial(self._operation, "transfer", transfer_id, client, cents, currency, lookup, send)
        mode = "resolve" if resolve_only else "send"
        flight = self.gateway.flights.run(f"transfer:{transfer_id}", mode, partial(work, resolve_only))
        return await asyncio.shield(flight)

    async def _send_transfer(self, transfer_id: str, nickname: str, cents: int, currency: str) -> RestResult:
        return await self.client.transfer(
            self._agent_token,
            request_id=transfer_id,
            to_nickname=nickname,
            amount=_amount(cents),
            currency=currency,
            notes=reference(transfer_id, self.gateway.config.reference_prefix),
        )

    # ---- withdrawals ------------------------------------------------------------------------------

    async def request_withdrawal_code(self, client_token: str, cents: int, currency: str) -> None:
        _check("client_token", client_token, BEARER, "must be a bearer token")
        check_amount(cents, currency)
        self.gateway.term.token()
        await self._check_currency(currency)
        profile = await self.profile()
        await self.client.request_withdrawal_code(
            client_token, agent_id=profile.agent_id, amount=_amount(cents), currency=currency
        )

    async def withdraw(
        self,
        withdrawal_id: str,
        client_token: str,
        nickname: str,
        code: str,
        cents: int,
        currency: str,
        *,
        resolve_only: bool = False,
    ) -> MoneyResult:
        check_operation_id("withdrawal_id", withdrawal_id)
        # resolve_only without the client's token: the agent may read the withdrawal's status too
        # (anchors §4.8), so a saga resolves it even when the user's token has died meanwhile.
        on_agent = resolve_only and not client_token
        if not on_agent:
            _check("client_token", client_token, BEARER, "must be a bearer token")
        _check("client_nickname", nickname, NICKNAME, "must match ^[A-Za-z0-9_.-]{1,31}$")
        if not resolve_only:
            _check("verification_code", code, REST_CODE, "must be the 6-digit code")
        check_amount(cents, currency)
        self.gateway.term.token()

        async def lookup() -> RestResult | None:
            if on_agent:
                async with agent_token_in_use():
                    return await self.client.lookup_withdrawal(self._agent_token, withdrawal_id)
            return await self.client.lookup_withdrawal(client_token, withdrawal_id)

        async def send() -> RestResult:
            profile = await self.profile()
            return await self.client.withdraw(
                client_token,
                request_id=withdrawal_id,
                agent_id=profile.agent_id,
                amount=_amount(cents),
                currency=currency,
                verification_code=code,
                notes=reference(withdrawal_id, self.gateway.config.reference_prefix),
            )

        client = f"@{nickname}"
        work = partial(self._operation, "withdraw", withdrawal_id, client, cents, currency, lookup, send)
        mode = "resolve" if resolve_only else "send"
        flight = self.gateway.flights.run(f"withdraw:{withdrawal_id}", mode, partial(work, resolve_only))
        return await asyncio.shield(flight)

    # ---- the journal protocol ---------------------------------------------------------------------

    async def _operation(
        self,
        kind: str,
        operation_id: str,
        client: str,
        cents: int,
        currency: str,
        lookup: Lookup,
        send: Send,
        resolve_only: bool,
    ) -> MoneyResult:
        gw = self.gateway
        token = await gw.term.fenced()
        await self._check_currency(currency)
        row = await gw.journal.get(operation_id)
        if row is not None and not row.same_request(kind, client, cents, currency):
            raise OperationConflict(f"{kind} id {operation_id} was used for a different {kind}")
        if row is not None and row.status in (jn.DONE, jn.FAILED):
            return gw.steps.replay(row)
        if resolve_only:
            return await self._resolve_only(kind, operation_id, client, cents, currency, row, token, lookup)
        if row is None:
            # a REST row carries its request_id as its description
            call = MoneyCall(operation_id, kind, client, cents, currency, operation_id, token)
            created, row = await gw.steps.claim(call)
            if not created:
                return await self._operation(kind, operation_id, client, cents, currency, lookup, send, False)
        elif row.status == jn.NOT_SENT:
            await gw.journal.resend(operation_id, token, jn.NOT_SENT)
        else:  # SENDING, left by an earlier attempt: look it up first
            await gw.steps.take_over(row, token)
            scanned_at = self.gateway.clock.now()
            found = await self._lookup(lookup, kind, operation_id)
            if found is not None:
                return await self._done(kind, operation_id, client, cents, currency, token, found)
            # Unknown to Deriv. Deriv refuses a reused request_id, but a first POST still being
            # processed may not have registered it yet: as on v3, send again only after the settle
            # window (and a POST that did run then answers RequestIDUsed and is looked up).
            age = (scanned_at - row.updated_at).total_seconds()
            if age < gw.config.unknown_settle:
                raise gw.steps.unknown(row, age)
            await gw.journal.resend(operation_id, token, jn.SENDING)
        return await self._send(kind, operation_id, client, cents, currency, token, send)

    async def _lookup(self, lookup: Lookup, kind: str, operation_id: str) -> RestResult | None:
        try:
            return await lookup()
        except errors.DerivError as exc:
            if isinstance(exc, errors.PaymentAgentTransferError | errors.PaymentAgentWithdrawError):
                raise  # settled rejected / failed: definite
            # the lookup said nothing of the operation (refused, limited, lost): unknown, never
            # "not sent", never a refusal of the operation
            raise errors.OutcomeUnknown(
                f"outcome of {kind} {operation_id} unknown: the lookup failed ({exc.code}); retry later",
                code="OutcomeUnknown",
                details={"retry_after": float(exc.details.get("retry_after") or 5.0)},
            ) from exc

    async def _send(
        self, kind: str, operation_id: str, client: str, cents: int, currency: str, token: int, send: Send
    ) -> MoneyResult:
        gw = self.gateway
        try:
            result = await send()
        except errors.NotExecuted as exc:
            await gw.steps.finish_quietly(operation_id, token, jn.NOT_SENT, exc)
            raise
        except errors.OutcomeUnknown as exc:
            log.warning("gateway.rest_outcome_unknown", operation_id=operation_id, kind=kind, code=exc.code)
            raise  # the row stays SENDING: the next call (or resolve_only) looks it up
        except errors.DerivError as exc:
            await gw.steps.finish_quietly(operation_id, token, jn.FAILED, exc)
            raise
        return await self._done(kind, operation_id, client, cents, currency, token, result)

    async def _done(
        self,
        kind: str,
        operation_id: str,
        client: str,
        cents: int,
        currency: str,
        token: int,
        found: RestResult,
    ) -> MoneyResult:
        name = found.client_real_name or ""
        try:
            await self.gateway.journal.finish(
                operation_id,
                token,
                jn.DONE,
                deriv_transaction_id=found.transaction_id,
                result={"counterparty_name": name, "resolved_from_statement": found.resolved, "api": "rest"},
            )
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader owns this operation") from None
        log.info("gateway.rest_done", operation_id=operation_id, kind=kind, resolved=found.resolved)
        txn = found.transaction_id or 0
        return MoneyResult(operation_id, txn, client, cents, currency, name, False, found.resolved)

    async def _resolve_only(
        self,
        kind: str,
        operation_id: str,
        client: str,
        cents: int,
        currency: str,
        row: jn.Operation | None,
        token: int,
        lookup: Lookup,
    ) -> MoneyResult:
        gw = self.gateway
        if row is not None and row.status == jn.NOT_SENT:
            raise OperationNotExecuted(f"operation {operation_id} was not executed (journal: NOT_SENT)")
        if row is not None:
            await gw.steps.take_over(row, token)
        scanned_at = self.gateway.clock.now()
        found = await self._lookup(lookup, kind, operation_id)
        if found is not None:
            if row is None:
                return await self._unjournaled(kind, operation_id, client, cents, currency, token, found)
            return await self._done(kind, operation_id, client, cents, currency, token, found)
        if row is None:
            raise OperationNotExecuted(f"operation {operation_id} was never sent (no journal row)")
        age = (scanned_at - row.updated_at).total_seconds()
        if age < gw.config.unknown_settle:
            raise gw.steps.unknown(row, age)
        await gw.steps.mark_not_executed(row, token, age)
        raise OperationNotExecuted(f"{kind} {operation_id} unknown to Deriv {age:.0f}s after it was sent")

    async def _unjournaled(
        self,
        kind: str,
        operation_id: str,
        client: str,
        cents: int,
        currency: str,
        token: int,
        found: RestResult,
    ) -> MoneyResult:
        if found.transaction_id is None:
            raise errors.OutcomeUnknown(f"{kind} {operation_id} complete without a transaction id; retry")
        try:
            created = await self.gateway.journal.record_unjournaled(
                operation_id=operation_id,
                kind=kind,
                client_loginid=client,
                amount_cents=cents,
                currency=currency,
                description=operation_id,
                token=token,
                deriv_transaction_id=found.transaction_id,
                result={"counterparty_name": "", "resolved_from_statement": True, "api": "rest"},
            )
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader has written to the journal") from None
        if not created:
            raise errors.OutcomeUnknown(f"operation {operation_id} appeared in the journal meanwhile; retry")
        log.error("gateway.executed_without_journal_row", operation_id=operation_id, kind=kind)
        return MoneyResult(operation_id, found.transaction_id, client, cents, currency, "", False, True)

"""The REST Payment-Agent client: one pooled aiohttp session, a limiter per token, outcomes resolved.

Rules it keeps (issue 15):
- every request carries `Authorization: Bearer <PAT or OAuth token>` and `Deriv-App-ID`;
- a money POST carries `request_id` = PenPay's id and is sent once per call. An unknown outcome
  (timeout, 5xx, the connection lost after the request went, `RequestIDUsed`) is resolved by
  `GET /transfer/{request_id}` (or `/withdraw/{request_id}`) and, where the transfer-status endpoint
  is absent (June generation), by the payment-agent wallet's transactions filtered by request_id;
  never by a second POST. A lookup that cannot answer leaves the outcome unknown (it is not proof);
- `pending` is followed until it settles (complete, or rejected/failed: a definite refusal);
- an answer is used only if it is about our request_id (issue 21): a status answer whose
  `metadata.endpoint` is another path, or a statement line with another request_id, is ignored;
- a call the per-token limiter holds back longer than `max_wait` is refused as RateLimit with
  `retry_after` (deferred: nothing was sent); a 429's `next_request_at` blocks the token until then;
- no token, code or phone number in a log line (tokens are registered with the log scrubber).

Time is injected (`clock`, `sleep`) so tests never wait out a window.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from deriv_gateway.logs import get_logger, register_secret
from deriv_gateway.protocol import errors

from .envelope import EndpointAbsent, OperationPending, RequestIdNotFound, decode
from .limiter import Limiters

log = get_logger("deriv_gateway.rest")

TRANSFER = "/payment-agents/v1/transfer"
WITHDRAW = "/payment-agents/v1/withdraw"
VERIFICATION_CODE = "/payment-agents/v1/withdraw/verification_code"
WALLETS = "/wallet/v1/wallets"
PA_TRANSACTIONS = "/wallet/v1/transactions/payment_agent"
CALL_TRANSFER = "paymentagent_transfer"
CALL_WITHDRAW = "paymentagent_withdraw"
SETTLED = ("complete", "rejected", "failed")
DIGITS = {"USD": 2, "EUR": 2, "GBP": 2, "AUD": 2, "BTC": 8, "ETH": 8, "LTC": 8}

Observer = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class RestResult:
    request_id: str
    status: str  # complete | dry_run_ok
    transaction_id: int | None
    resolved: bool  # learned by a lookup, not from the POST's own answer
    client_real_name: str | None = None


@dataclass(frozen=True, slots=True)
class CodeSent:
    next_request_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class WalletBalance:
    wallet_type: str
    currency: str
    minor: int


async def _sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class DerivRestClient:
    def __init__(
        self,
        base_url: str,
        app_id: str,
        *,
        per_minute: int = 60,
        max_wait: float = 2.0,
        request_timeout: float = 15.0,
        poll_interval: float = 2.0,
        follow_for: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = _sleep,
        observer: Observer | None = None,
        pool_size: int = 20,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.limiters = Limiters(per_minute)
        self.max_wait = max_wait
        self.request_timeout = request_timeout
        self.poll_interval = poll_interval
        self.follow_for = follow_for
        self.clock = clock
        self.sleep = sleep
        self.observer = observer
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        # the June generation has no GET /transfer/{request_id}: learnt from its 404, then skipped
        self.transfer_status_absent = False

    # ---- lifecycle ------------------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> DerivRestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- one request -----------------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        token: str,
        *,
        call: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """(data, whole answer) of one request, or the error class for its failure."""
        register_secret(token)
        limiter = self.limiters.for_token(token)
        delay = limiter.reserve(self.clock(), self.max_wait)
        if delay > self.max_wait:
            raise errors.RateLimit(
                f"held back by the per-token limiter for {delay:.1f}s",
                details={"retry_after": delay, "held_back": True},
                msg_type=call,
            )
        if delay > 0:
            await self.sleep(delay)
        headers = {
            "Authorization": f"Bearer {token}",
            "Deriv-App-ID": self.app_id,
            "Accept": "application/json",
        }
        if self.observer is not None:
            self.observer("send", {"method": method, "path": path, "query": query or {}, "body": body})
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        try:
            async with self.session.request(
                method, self.base_url + path, json=body, params=query, headers=headers, timeout=timeout
            ) as response:
                status = response.status
                text = await response.text()
        except TimeoutError:
            raise errors.RequestTimeout(f"no answer within {self.request_timeout}s", msg_type=call) from None
        except aiohttp.ClientConnectorError as exc:
            # the connection was never made: the request did not leave
            raise errors.NotConnected(f"cannot connect: {type(exc).__name__}", msg_type=call) from None
        except aiohttp.ClientError as exc:
            raise errors.ConnectionLost(f"connection lost: {type(exc).__name__}", msg_type=call) from None
        try:
            answer: Any = json.loads(text, parse_float=Decimal)
        except ValueError:
            answer = None
        if self.observer is not None:
            self.observer("recv", {"method": method, "path": path, "status": status, "body": answer})
        try:
            data = decode(status, answer, call=call, now=self.clock())
        except errors.RateLimit as exc:
            if status == 429:
                limiter.block(self.clock() + float(exc.details.get("retry_after", 60.0)))
            log.info("deriv_rest.refused", path=path, status=status, code=exc.code)
            raise
        except errors.DerivError as exc:
            log.info("deriv_rest.refused", path=path, status=status, code=exc.code)
            raise
        return data, answer

    # ---- deposits: agent -> client ---------------------------------------------------------------------

    async def transfer(
        self,
        token: str,
        *,
        request_id: str,
        to_nickname: str,
        amount: str,
        currency: str,
        notes: str = "",
        dry_run: bool = False,
    ) -> RestResult:
        data: dict[str, Any] = {
            "to_nickname": to_nickname,
            "amount": amount,
            "currency": currency,
            "request_id": request_id,
        }
        if notes:
            data["notes"] = notes
        if dry_run:
            data["dry_run"] = True
        try:
            answer, _ = await self.call("POST", TRANSFER, token, call=CALL_TRANSFER, body={"data": data})
        except errors.OutcomeUnknown as cause:
            if dry_run:
                raise
            log.warning("deriv_rest.transfer_unknown", request_id=request_id, code=cause.code)
            return await self._resolve("transfer", token, request_id, cause)
        status = _status(answer, CALL_TRANSFER)
        real_name = (
            answer.get("client_real_name") if isinstance(answer.get("client_real_name"), str) else None
        )
        if status in ("complete", "dry_run_ok"):
            return RestResult(request_id, status, _txn(answer), False, real_name)
        if status in ("pending", "requested"):
            return await self._follow("transfer", token, request_id)
        raise _refusal("transfer", status, request_id)

    async def lookup_transfer(self, token: str, request_id: str) -> RestResult | None:
        """The transfer this request_id made, None if Deriv knows none; pending is followed."""
        if not self.transfer_status_absent:
            try:
                return await self._status_once("transfer", token, request_id, follow=True)
            except EndpointAbsent:
                self.transfer_status_absent = True
                log.info("deriv_rest.transfer_status_absent")
            except RequestIdNotFound:
                return None
        return await self._from_statement(token, request_id)

    async def _from_statement(self, token: str, request_id: str) -> RestResult | None:
        data, _ = await self.call(
            "GET", PA_TRANSACTIONS, token, call="statement", query={"request_id": request_id}
        )
        items = data.get("transactions") if isinstance(data, dict) else None
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or item.get("request_id") != request_id:
                if isinstance(item, dict):
                    log.warning("deriv_rest.foreign_statement_line", request_id=request_id)
                continue  # issue 21: only a line about our request_id counts
            if item.get("category") != "withdrawal":
                continue  # the agent's wallet is debited by a transfer
            meta = _obj(item.get("metadata"))
            status = str(meta.get("transaction_status") or "complete")
            if status in ("complete",):
                return RestResult(request_id, "complete", _txn(item), True)
            if status in ("pending", "processing"):
                raise OperationPending(f"transfer {request_id} is {status}", msg_type=CALL_TRANSFER)
            raise _refusal("transfer", status, request_id)
        return None

    # ---- withdrawals: client -> agent, on the client's token ------------------------------------------

    async def request_withdrawal_code(
        self, client_token: str, *, agent_id: int, amount: str, currency: str
    ) -> CodeSent:
        body = {"data": {"agent_id": agent_id, "amount": amount, "currency": currency}}
        data, _ = await self.call("POST", VERIFICATION_CODE, client_token, call="verify_email", body=body)
        return CodeSent(int(data.get("next_request_at") or 0), int(data.get("expires_at") or 0))

    async def withdraw(
        self,
        client_token: str,
        *,
        request_id: str,
        agent_id: int,
        amount: str,
        currency: str,
        verification_code: str,
        notes: str = "",
    ) -> RestResult:
        data: dict[str, Any] = {
            "agent_id": agent_id,
            "amount": amount,
            "currency": currency,
            "verification_code": verification_code,
            "request_id": request_id,
        }
        if notes:
            data["notes"] = notes
        try:
            answer, _ = await self.call(
                "POST", WITHDRAW, client_token, call=CALL_WITHDRAW, body={"data": data}
            )
        except errors.OutcomeUnknown as cause:
            log.warning("deriv_rest.withdraw_unknown", request_id=request_id, code=cause.code)
            return await self._resolve("withdraw", client_token, request_id, cause)
        status = _status(answer, CALL_WITHDRAW)
        if status == "complete":
            return RestResult(request_id, status, _txn(answer), False)
        if status in ("pending", "requested"):
            return await self._follow("withdraw", client_token, request_id)
        raise _refusal("withdraw", status, request_id)

    async def lookup_withdrawal(self, client_token: str, request_id: str) -> RestResult | None:
        try:
            return await self._status_once("withdraw", client_token, request_id, follow=True)
        except RequestIdNotFound:
            return None

    # ---- balance -------------------------------------------------------------------------------------

    async def balance(self, token: str, wallet_type: str = "payment_agent") -> WalletBalance:
        data, _ = await self.call("GET", WALLETS, token, call="balance")
        wallets = [w for w in data if isinstance(w, dict)] if isinstance(data, list) else []
        chosen = next((w for w in wallets if w.get("type") == wallet_type), None)
        if chosen is None:
            raise errors.UnexpectedReply(f"no {wallet_type} wallet", msg_type="balance")
        balances = _obj(chosen.get("balances"))
        for currency, value in balances.items():
            # the value's shape is not documented: {"balance": "1.00", ...}, a string or a number
            raw = value.get("balance") if isinstance(value, dict) else value
            try:
                amount = Decimal(str(raw))
            except InvalidOperation:
                continue
            if amount.is_finite():
                digits = DIGITS.get(currency, 2)
                return WalletBalance(wallet_type, currency, int(amount.scaleb(digits).to_integral_value()))
        raise errors.UnexpectedReply("the wallet has no balance", msg_type="balance")

    # ---- resolution ----------------------------------------------------------------------------------

    async def _resolve(self, kind: str, token: str, request_id: str, cause: errors.DerivError) -> RestResult:
        try:
            if kind == "transfer":
                found = await self.lookup_transfer(token, request_id)
            else:
                found = await self.lookup_withdrawal(token, request_id)
        except errors.DerivError as probe:
            if isinstance(
                probe, OperationPending | errors.PaymentAgentTransferError | errors.PaymentAgentWithdrawError
            ):
                raise  # about the operation itself: pending, or settled rejected / failed
            # the lookup could not answer (refused, limited, lost): still unknown, never "not sent"
            raise type(cause)(
                f"outcome unknown ({cause.code}) and the lookup failed ({probe.code}); retry later",
                code=cause.code,
                details={**probe.details, "lookup": probe.code},
                msg_type=cause.msg_type,
            ) from None
        if found is None:
            # nothing known under our id (yet): not proof of nothing; the caller looks again later
            raise type(cause)(
                f"outcome unknown ({cause.code}); Deriv knows no {kind} {request_id} yet",
                code=cause.code,
                details=cause.details,
                msg_type=cause.msg_type,
            ) from None
        log.info("deriv_rest.resolved", kind=kind, request_id=request_id, status=found.status)
        return found

    async def _status_once(self, kind: str, token: str, request_id: str, *, follow: bool) -> RestResult:
        path = f"/payment-agents/v1/{kind}/{quote(request_id, safe='')}"
        call = CALL_TRANSFER if kind == "transfer" else CALL_WITHDRAW
        data, answer = await self.call("GET", path, token, call=call)
        meta = _obj(answer.get("metadata"))
        endpoint = meta.get("endpoint")
        if isinstance(endpoint, str) and urlsplit(endpoint).path not in (
            path,
            f"/payment-agents/v1/{kind}/{request_id}",
        ):
            log.warning("deriv_rest.foreign_answer", kind=kind, request_id=request_id)
            raise errors.UnexpectedReply(f"a status answer about {endpoint}, not {request_id}", msg_type=call)
        status = _status(data, call)
        if status == "complete":
            return RestResult(request_id, status, _txn(data), True)
        if status in ("pending", "requested"):
            if follow:
                return await self._follow(kind, token, request_id)
            raise OperationPending(f"{kind} {request_id} is {status}", msg_type=call)
        raise _refusal(kind, status, request_id)

    async def _follow(self, kind: str, token: str, request_id: str) -> RestResult:
        """Poll the status every poll_interval until it settles or follow_for has passed."""
        started = self.clock()
        while True:
            if self.clock() - started >= self.follow_for:
                call = CALL_TRANSFER if kind == "transfer" else CALL_WITHDRAW
                raise OperationPending(f"{kind} {request_id} still pending", msg_type=call)
            await self.sleep(self.poll_interval)
            try:
                result = await self._status_once(kind, token, request_id, follow=False)
            except OperationPending:
                continue
            except EndpointAbsent:
                self.transfer_status_absent = True
                found = await self._from_statement(token, request_id)
                if found is not None:
                    return found
                continue
            return result


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _status(data: Any, call: str) -> str:
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(status, str):
        raise errors.UnexpectedReply("an answer without status", msg_type=call)
    return status


def _txn(data: dict[str, Any]) -> int | None:
    value = data.get("transaction_id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _refusal(kind: str, status: str, request_id: str) -> errors.DerivError:
    """rejected / failed: definite, nothing moved. Any other status is not one we know."""
    if status not in ("rejected", "failed"):
        return errors.UnexpectedReply(f"{kind} {request_id}: status {status!r}")
    cls = errors.PaymentAgentTransferError if kind == "transfer" else errors.PaymentAgentWithdrawError
    call = CALL_TRANSFER if kind == "transfer" else CALL_WITHDRAW
    code = f"{kind.capitalize()}{status.capitalize()}"
    return cls(f"{kind} {request_id} {status}", code=code, msg_type=call)

"""Reconciliation's reads of Deriv through the gateway: the agent's statement by range (ListStatement,
every page) and its balance. Read-only: never a money frame.

The agent's records at Deriv are one book seen through two transports: the v3 `statement` and, when
the gateway has a REST transport, the payment-agent wallet's transactions. Both are read and a
transaction is kept once, by its Deriv transaction id (a v3 line carries PenPay's reference in its
description; the REST item carries PenPay's id as request_id and its status)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import grpc

from application.reconciliation.ports import DERIV_FLOAT, DERIV_STATEMENT, ProviderReadFailed, ProviderRecord
from application.reconciliation.rules import Amount
from application.reconciliation.service import transaction_hint
from deriv_gateway.payments_client import _retry_after
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc

PAGE = 200
REST_PAGE = 100
MAX_PAGES = 10_000  # a bound on a provider that keeps answering "more"
# The agent's REST token has 60 calls a minute, shared with the money calls: a wallet page the
# gateway held back for it (nothing sent) is asked again after the delay it names, a few times.
HELD_BACK_TRIES = 3
HELD_BACK_WAIT_MAX = 65.0


class GatewayDerivReads:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float = 30.0,
        rest: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._stub = pb_grpc.DerivGatewayServiceStub(channel)
        self._timeout = timeout
        self._rest = rest  # the gateway has a REST transport: read the wallet's transactions too
        self._sleep = sleep
        self.held_back = 0  # wallet pages asked again after the limiter held them back

    async def statement(self, start: datetime, end: datetime) -> list[ProviderRecord]:
        records = await self._v3(start, end)
        if self._rest:
            records = merge(records, await self._wallet(start, end))
        return records

    async def _list(self, request: pb.ListStatementRequest) -> pb.ListStatementResponse:
        for attempt in range(HELD_BACK_TRIES):
            try:
                reply: pb.ListStatementResponse = await self._stub.ListStatement(
                    request, timeout=self._timeout
                )
                return reply
            except grpc.aio.AioRpcError as error:
                wait = (
                    _retry_after(error, None) if error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED else None
                )
                last = attempt == HELD_BACK_TRIES - 1
                if wait is None or wait > HELD_BACK_WAIT_MAX or last or request.api != pb.DERIV_API_REST:
                    raise ProviderReadFailed(
                        DERIV_STATEMENT, f"{error.code().name}: {error.details()}"
                    ) from None
                self.held_back += 1
                await self._sleep(wait)
        raise AssertionError("unreachable")

    async def _v3(self, start: datetime, end: datetime) -> list[ProviderRecord]:
        records: list[ProviderRecord] = []
        offset = 0
        while True:
            reply = await self._list(
                pb.ListStatementRequest(
                    date_from_unix=max(1, int(start.timestamp())),
                    date_to_unix=int(end.timestamp()),
                    offset=offset,
                    limit=PAGE,
                )
            )
            for e in reply.entries:
                records.append(
                    ProviderRecord(
                        ref=str(e.deriv_transaction_id),
                        amount=Amount(e.amount.amount_cents, e.amount.currency),
                        credit=e.credit,
                        occurred_at=datetime.fromtimestamp(e.transaction_time, UTC),
                        reference=e.longcode,
                        transaction_hint=transaction_hint(e.longcode),
                    )
                )
            offset += len(reply.entries)
            if not reply.more or not reply.entries:
                return records

    async def _wallet(self, start: datetime, end: datetime) -> list[ProviderRecord]:
        found: dict[str, ProviderRecord] = {}
        token = ""
        for _ in range(MAX_PAGES):
            reply = await self._list(
                pb.ListStatementRequest(
                    date_from_unix=max(1, int(start.timestamp())),
                    date_to_unix=int(end.timestamp()),
                    limit=REST_PAGE,
                    api=pb.DERIV_API_REST,
                    page_token=token,
                )
            )
            new = 0
            for e in reply.entries:
                record = _wallet_record(e)
                if record.ref not in found:
                    found[record.ref] = record
                    new += 1
            if not reply.next_page_token:
                return list(found.values())
            if new == 0:
                # a time-paged range (Deriv left `links` out) whose next page brings nothing new
                # while more may follow: what lies beyond cannot be read, and is never taken as none
                raise ProviderReadFailed(DERIV_STATEMENT, "wallet transactions could not be paged further")
            token = reply.next_page_token
        raise ProviderReadFailed(DERIV_STATEMENT, f"wallet transactions: more than {MAX_PAGES} pages")

    async def balance(self) -> Amount:
        try:
            reply = await self._stub.GetBalance(pb.GetBalanceRequest(), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise ProviderReadFailed(DERIV_FLOAT, f"{error.code().name}: {error.details()}") from None
        return Amount(reply.balance.amount_cents, reply.balance.currency)


def _wallet_record(e: pb.StatementEntry) -> ProviderRecord:
    # An operation Deriv has not given a transaction id yet (pending) is known by its request_id.
    ref = str(e.deriv_transaction_id) if e.deriv_transaction_id else f"request:{e.request_id}"
    return ProviderRecord(
        ref=ref,
        amount=Amount(e.amount.amount_cents, e.amount.currency),
        credit=e.credit,
        occurred_at=datetime.fromtimestamp(e.transaction_time, UTC),
        reference=e.longcode,
        transaction_hint=transaction_hint(e.request_id),
        status=e.status or "complete",
    )


def merge(v3: list[ProviderRecord], wallet: list[ProviderRecord]) -> list[ProviderRecord]:
    """One record per Deriv transaction id: a v3 line and the wallet item of the same transaction are
    one movement of money. The v3 line stays (its description carries PenPay's reference); the wallet
    item adds the PenPay id it names and its status where the line lacks them. Where the two views
    disagree on the amount or the direction, the record carries the disagreement (never matched)."""
    by_ref = {r.ref: i for i, r in enumerate(v3)}
    merged = list(v3)
    for item in wallet:
        at = by_ref.get(item.ref)
        if at is None:
            by_ref[item.ref] = len(merged)
            merged.append(item)
            continue
        line = merged[at]
        conflict = ""
        if (item.amount, item.credit) != (line.amount, line.credit):
            side = "in" if item.credit else "out"
            conflict = f"the REST wallet shows {item.amount.cents} {item.amount.currency} {side}"
        merged[at] = ProviderRecord(
            ref=line.ref,
            amount=line.amount,
            credit=line.credit,
            occurred_at=line.occurred_at,
            reference=line.reference,
            transaction_hint=line.transaction_hint or item.transaction_hint,
            party=line.party,
            account=line.account,
            status=item.status,
            conflict=conflict,
        )
    return merged

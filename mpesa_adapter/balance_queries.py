"""Account Balance, asked so that its answer can be believed: `ask_account_balance` sends the query and
records the ids Daraja gave it (audit trail, SqlCallbackInbox.record_balance_query); the result that
arrives at the balance ResultURL is taken only when it names those ids (record_balance_result)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from mpesa_adapter.types import RequestAccepted


class BalanceClient(Protocol):
    async def account_balance(self, *, remarks: str = ...) -> RequestAccepted: ...


class BalanceQueryStore(Protocol):
    async def record_balance_query(self, accepted: RequestAccepted, *, now: datetime) -> None: ...


async def ask_account_balance(
    client: BalanceClient, store: BalanceQueryStore, *, now: datetime | None = None
) -> RequestAccepted:
    accepted = await client.account_balance()
    # A result can beat this record (Daraja answers within seconds); it is then kept for review with
    # an alert, as any result about no query of ours.
    await store.record_balance_query(accepted, now=now or datetime.now(UTC))
    return accepted

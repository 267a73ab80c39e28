"""Account Balance, asked so that its answer can be believed: `ask_account_balance` sends the query and
records the ids Daraja gave it and the shortcode asked about (audit trail,
SqlCallbackInbox.record_balance_query); the result that arrives at the balance ResultURL is taken only
when it names those ids (record_balance_result). The float is spread over several shortcodes (the
collecting paybill/STK ones and the B2C one), so `ask_account_balances` asks each of them."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from mpesa_adapter.types import RequestAccepted


class BalanceClient(Protocol):
    @property
    def balance_shortcodes(self) -> tuple[str, ...]: ...

    async def account_balance(
        self, *, shortcode: str | None = ..., remarks: str = ...
    ) -> RequestAccepted: ...


class BalanceQueryStore(Protocol):
    async def record_balance_query(
        self, accepted: RequestAccepted, *, now: datetime, shortcode: str | None = ...
    ) -> None: ...


async def ask_account_balance(
    client: BalanceClient,
    store: BalanceQueryStore,
    *,
    shortcode: str | None = None,
    now: datetime,
) -> RequestAccepted:
    accepted = await client.account_balance(shortcode=shortcode)
    # A result can beat this record (Daraja answers within seconds); it is then kept for review with
    # an alert, as any result about no query of ours.
    await store.record_balance_query(accepted, now=now, shortcode=shortcode)
    return accepted


async def ask_account_balances(
    client: BalanceClient, store: BalanceQueryStore, *, now: datetime
) -> dict[str, RequestAccepted]:
    """One Account Balance query per shortcode holding part of the float, by shortcode."""
    return {
        shortcode: await ask_account_balance(client, store, shortcode=shortcode, now=now)
        for shortcode in client.balance_shortcodes
    }

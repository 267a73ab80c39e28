"""Pull Transactions of PenPay's shortcodes, each registered once per process before its first query
(Daraja refuses a query for a shortcode not registered). Shared by reconciliation and the review
queue, which asks it about a push whose answer was lost."""

from __future__ import annotations

from datetime import datetime

from mpesa_adapter.client import DarajaClient
from mpesa_adapter.pull_transactions import PulledTransaction


class PullReads:
    def __init__(self, client: DarajaClient, *, nominated_number: str, callback_url: str) -> None:
        self._client = client
        self._nominated = nominated_number
        self._callback = callback_url
        self._registered: set[str] = set()

    @property
    def shortcodes(self) -> tuple[str, ...]:
        """Every shortcode PenPay collects under; the first is the STK pushes' own."""
        return self._client.pull_shortcodes

    async def pulled(self, start: datetime, end: datetime, *, shortcode: str) -> list[PulledTransaction]:
        """Every C2B payment of `shortcode` in [start, end]. Raises an MpesaAdapterError (PullFailed:
        a failed pull, never an empty list) when M-Pesa cannot be read."""
        if shortcode not in self._registered:
            await self._client.pull_register(
                nominated_number=self._nominated, callback_url=self._callback, shortcode=shortcode
            )
            self._registered.add(shortcode)
        return await self._client.pull_transactions(start, end, shortcode=shortcode)

"""Read side of the wallet (PEC 6.2): balances, ledger entries and statements of a user's
wallet accounts (ledger_accounts of kind USER_WALLET), straight from the ledger tables through
the WalletReadModel port (persistence/wallet_queries.py). No aggregates, no events.

Every query takes the user id of the caller: a user can only ever read their own accounts.
Amounts keep the ledger's integer minor units; "balance change" is an entry's effect on the
wallet balance (a wallet is credit-normal: credits add, debits subtract).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from domain.shared.clock import require_utc
from domain.shared.errors import InvalidValue
from domain.shared.ids import LedgerAccountId, LedgerEntryId, TransactionId, UserId
from domain.wallet.account_kind import LedgerSide
from domain.wallet.money import Currency, Money

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
STATEMENT_MAX_ENTRIES = 1000
STATEMENT_MAX_PERIOD = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class WalletBalance:
    ledger_account_id: LedgerAccountId
    balance: Money
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class WalletEntry:
    ledger_entry_id: LedgerEntryId
    ledger_account_id: LedgerAccountId
    transaction_id: TransactionId | None
    side: LedgerSide
    amount: Money
    balance_change_minor: int
    description: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EntryCursor:
    """Keyset position: entries strictly older than (created_at, entry id)."""

    created_at: datetime
    entry_id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.entry_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> EntryCursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            when, _, entry = raw.partition("|")
            return cls(require_utc(datetime.fromisoformat(when)), uuid.UUID(entry))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidValue("page_token is not one this service returned", field="page_token") from None


@dataclass(frozen=True, slots=True)
class EntryPage:
    items: list[WalletEntry]
    next_page_token: str | None


@dataclass(frozen=True, slots=True)
class PeriodTotals:
    credits_minor: int
    debits_minor: int
    balance_change_minor: int


@dataclass(frozen=True, slots=True)
class Statement:
    currency: Currency
    start: datetime
    end: datetime
    opening_balance: Money
    total_credits: Money
    total_debits: Money
    closing_balance: Money
    entries: list[WalletEntry]
    truncated: bool


class WalletReadModel(Protocol):
    async def balances(self, user_id: UserId) -> list[WalletBalance]: ...

    async def entries(
        self,
        user_id: UserId,
        *,
        currency: Currency | None,
        limit: int,
        before: EntryCursor | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        oldest_first: bool = False,
    ) -> list[WalletEntry]:
        """Entries of the user's wallet accounts, newest first unless `oldest_first`;
        `start` inclusive, `end` exclusive."""
        ...

    async def totals(
        self, user_id: UserId, currency: Currency, *, start: datetime | None, end: datetime
    ) -> PeriodTotals:
        """Sums over the user's wallet entries in [start, end) (from the beginning if start is None)."""
        ...


def _currency(code: str, *, required: bool) -> Currency | None:
    if not code:
        if required:
            raise InvalidValue("currency is required (USD or KES)", field="currency")
        return None
    return Currency.parse(code.strip().upper())


class WalletQueries:
    def __init__(self, read_model: WalletReadModel) -> None:
        self._read = read_model

    async def get_balances(self, user_id: UserId) -> list[WalletBalance]:
        return await self._read.balances(user_id)

    async def list_ledger_entries(
        self, user_id: UserId, *, currency: str = "", page_size: int = 0, page_token: str = ""
    ) -> EntryPage:
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidValue(f"page_size must be 1 to {MAX_PAGE_SIZE}", field="page_size")
        size = page_size or DEFAULT_PAGE_SIZE
        cursor = EntryCursor.decode(page_token) if page_token else None
        rows = await self._read.entries(
            user_id, currency=_currency(currency, required=False), limit=size + 1, before=cursor
        )
        items = rows[:size]
        more = len(rows) > size
        token = EntryCursor(items[-1].created_at, items[-1].ledger_entry_id.value).encode() if more else None
        return EntryPage(items, token)

    async def get_statement(
        self, user_id: UserId, *, currency: str, start: datetime, end: datetime
    ) -> Statement:
        code = _currency(currency, required=True)
        assert code is not None
        start, end = require_utc(start, "start_time"), require_utc(end, "end_time")
        if end <= start:
            raise InvalidValue("end_time must be after start_time", field="end_time")
        if end - start > STATEMENT_MAX_PERIOD:
            raise InvalidValue("a statement covers at most 366 days", field="end_time")
        opening = await self._read.totals(user_id, code, start=None, end=start)
        period = await self._read.totals(user_id, code, start=start, end=end)
        rows = await self._read.entries(
            user_id, currency=code, limit=STATEMENT_MAX_ENTRIES + 1, start=start, end=end, oldest_first=True
        )
        return Statement(
            currency=code,
            start=start,
            end=end,
            opening_balance=Money(opening.balance_change_minor, code),
            total_credits=Money(period.credits_minor, code),
            total_debits=Money(period.debits_minor, code),
            closing_balance=Money(opening.balance_change_minor + period.balance_change_minor, code),
            entries=rows[:STATEMENT_MAX_ENTRIES],
            truncated=len(rows) > STATEMENT_MAX_ENTRIES,
        )

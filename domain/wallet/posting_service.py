"""post(): book a posting onto its accounts, all of them or none."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime

from domain.shared.clock import require_utc, utc_now
from domain.shared.ids import LedgerAccountId
from domain.wallet.errors import UnknownLedgerAccount
from domain.wallet.events import BalanceChanged
from domain.wallet.ledger_account import LedgerAccount
from domain.wallet.ledger_entry import LedgerEntry
from domain.wallet.posting import Posting


def post(
    posting: Posting,
    accounts: Mapping[LedgerAccountId, LedgerAccount],
    *,
    now: datetime | None = None,
) -> list[BalanceChanged]:
    """Apply `posting` to `accounts`. Every check (account known, currency, overdraft) runs
    on every account before any account changes, so a refusal leaves all of them as they were."""
    by_account: dict[LedgerAccountId, list[LedgerEntry]] = defaultdict(list)
    for entry in posting.entries:
        by_account[entry.account_id].append(entry)
    for account_id, entries in by_account.items():
        account = accounts.get(account_id)
        if account is None:
            raise UnknownLedgerAccount(f"posting {posting.id} names unknown account {account_id}")
        account.balance_after(entries)  # raises; changes nothing
    at = require_utc(now) if now is not None else utc_now()
    return [
        accounts[account_id].apply_entries(posting.id, entries, now=at)
        for account_id, entries in by_account.items()
    ]

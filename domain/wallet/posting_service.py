"""post(): book a posting onto its accounts, all of them or none.

Hot accounts: an account the postings need not hold (LedgerAccount.serialises) is not applied
here; its change is returned as a RolledUpChange, written beside the entries and added into the
account's balance later. Every account is still checked (known, currency) before any changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from domain.shared.clock import require_utc, utc_now
from domain.shared.ids import LedgerAccountId, PostingId
from domain.wallet.errors import UnknownLedgerAccount
from domain.wallet.events import BalanceChanged
from domain.wallet.ledger_account import LedgerAccount
from domain.wallet.ledger_entry import LedgerEntry
from domain.wallet.posting import Posting


@dataclass(frozen=True, slots=True)
class RolledUpChange:
    """What one posting changed one account's balance by (normal side), left to the roll-up."""

    posting_id: PostingId
    account_id: LedgerAccountId
    change_minor: int


def _by_account(posting: Posting) -> dict[LedgerAccountId, list[LedgerEntry]]:
    by_account: dict[LedgerAccountId, list[LedgerEntry]] = defaultdict(list)
    for entry in posting.entries:
        by_account[entry.account_id].append(entry)
    return by_account


def _known(posting: Posting, accounts: Mapping[LedgerAccountId, LedgerAccount]) -> None:
    for account_id in {entry.account_id for entry in posting.entries}:
        if account_id not in accounts:
            raise UnknownLedgerAccount(f"posting {posting.id} names unknown account {account_id}")


def net_changes(
    postings: Sequence[Posting], accounts: Mapping[LedgerAccountId, LedgerAccount]
) -> dict[LedgerAccountId, int]:
    """What these postings, booked together, change each account's balance by (normal side);
    every account checked known and in its currency."""
    change: dict[LedgerAccountId, int] = defaultdict(int)
    for posting in postings:
        _known(posting, accounts)
        for account_id, entries in _by_account(posting).items():
            change[account_id] += accounts[account_id].change_of(entries)
    return dict(change)


def to_hold(
    postings: Sequence[Posting], accounts: Mapping[LedgerAccountId, LedgerAccount]
) -> set[LedgerAccountId]:
    """The accounts these postings, booked together, must hold (lock, check, update): decided on
    each account's net change over all of them."""
    change = net_changes(postings, accounts)
    return {account_id for account_id, net in change.items() if accounts[account_id].serialises(net)}


def post(
    posting: Posting,
    accounts: Mapping[LedgerAccountId, LedgerAccount],
    *,
    now: datetime | None = None,
) -> list[BalanceChanged]:
    """Apply `posting` to `accounts`, every one held. Every check (account known, currency,
    overdraft) runs on every account before any account changes, so a refusal leaves all of them
    as they were."""
    events, _ = post_all([posting], accounts, now=now)
    return events


def post_all(
    postings: Sequence[Posting],
    accounts: Mapping[LedgerAccountId, LedgerAccount],
    *,
    now: datetime | None = None,
    rolled_up: Collection[LedgerAccountId] = frozenset(),
) -> tuple[list[BalanceChanged], list[RolledUpChange]]:
    """Apply `postings`, in order, to `accounts`; a refusal of any of them leaves every account as
    it was. Accounts in `rolled_up` are checked (known, currency) but not changed: their changes
    are returned, one per posting and account, for the roll-up."""
    at = require_utc(now) if now is not None else utc_now()
    held = {i: a for i, a in accounts.items() if i not in rolled_up}
    before = {i: (a.balance_minor, a.version, a.updated_at) for i, a in held.items()}
    events: list[BalanceChanged] = []
    deferred: list[RolledUpChange] = []
    try:
        for posting in postings:
            _known(posting, accounts)
            by_account = _by_account(posting)
            for account_id, entries in by_account.items():
                account = accounts[account_id]
                if account_id in rolled_up:
                    deferred.append(RolledUpChange(posting.id, account_id, account.change_of(entries)))
                else:
                    account.balance_after(entries)  # raises; changes nothing
            events += [
                accounts[account_id].apply_entries(posting.id, entries, now=at)
                for account_id, entries in by_account.items()
                if account_id not in rolled_up
            ]
    except Exception:
        # a later posting refused: the earlier ones' changes are undone, so all or none
        for account_id, (balance, version, updated_at) in before.items():
            account = held[account_id]
            account.balance_minor, account.version, account.updated_at = balance, version, updated_at
        raise
    return events, deferred

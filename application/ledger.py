"""Booking postings: lock the accounts, let the domain check and apply, write it all."""

from __future__ import annotations

from collections.abc import Sequence

from application.unit_of_work import UnitOfWork
from domain.shared.ids import LedgerAccountId
from domain.wallet.ledger_account import LedgerAccount
from domain.wallet.posting import Posting
from domain.wallet.posting_service import post


async def book(uow: UnitOfWork, posting: Posting) -> dict[LedgerAccountId, LedgerAccount]:
    """Book `posting` inside `uow` (the caller commits). Raises the domain's refusal
    (Overdraft, CurrencyMismatch, ...) before anything is written. Returns the accounts it
    locked, as they are after the posting (no need to read them again)."""
    return await book_all(uow, [posting])


async def book_all(uow: UnitOfWork, postings: Sequence[Posting]) -> dict[LedgerAccountId, LedgerAccount]:
    """Book `postings` together, in order: their accounts locked in one read, the postings and
    their entries written in one insert each, the balances in one update. A refusal of any of
    them is raised before anything is written (the caller's unit of work then rolls back)."""
    account_ids = {entry.account_id for posting in postings for entry in posting.entries}
    accounts = await uow.ledger.get_accounts_for_update(account_ids)
    now = uow.clock.now()
    balance_events = [event for posting in postings for event in post(posting, accounts, now=now)]
    await uow.ledger.add_postings(postings)
    changed = dict.fromkeys(event.account_id for event in balance_events)  # in order, once each
    await uow.ledger.save_accounts(accounts[account_id] for account_id in changed)
    uow.record_events(balance_events)
    return accounts

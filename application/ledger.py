"""Booking postings: lock the accounts, let the domain check and apply, write it all."""

from __future__ import annotations

from application.unit_of_work import UnitOfWork
from domain.wallet.posting import Posting
from domain.wallet.posting_service import post


async def book(uow: UnitOfWork, posting: Posting) -> None:
    """Book `posting` inside `uow` (the caller commits). Raises the domain's refusal
    (Overdraft, CurrencyMismatch, ...) before anything is written."""
    account_ids = {entry.account_id for entry in posting.entries}
    accounts = await uow.ledger.get_accounts_for_update(account_ids)
    balance_events = post(posting, accounts, now=uow.clock.now())
    await uow.ledger.add_posting(posting)
    await uow.ledger.save_accounts(accounts[event.account_id] for event in balance_events)
    uow.record_events(balance_events)

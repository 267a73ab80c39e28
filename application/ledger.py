"""Booking postings: hold the accounts that must be held, let the domain check and apply, write
it all.

Hot accounts: only the accounts a posting must serialise on (user wallets, a no-overdraft float
that money leaves: LedgerAccount.serialises) are locked and updated here, in one locked read and
one update. Every other account (FX, FX_SPREAD, fees, suspense, a float money comes into) gets
its change written beside the entries, and the roll-up adds it into the balance later: the
accounts every deposit touches are no longer a queue.
"""

from __future__ import annotations

from collections.abc import Sequence

from application.unit_of_work import UnitOfWork
from domain.shared.ids import LedgerAccountId
from domain.wallet.account_kind import AccountKind
from domain.wallet.errors import Overdraft
from domain.wallet.ledger_account import LedgerAccount
from domain.wallet.posting import Posting
from domain.wallet.posting_service import post_all, to_hold


async def book(uow: UnitOfWork, posting: Posting) -> dict[LedgerAccountId, LedgerAccount]:
    """Book `posting` inside `uow` (the caller commits). Raises the domain's refusal
    (Overdraft, CurrencyMismatch, ...) before anything is written. Returns the accounts it
    held, as they are after the posting (no need to read them again)."""
    return await book_all(uow, [posting])


async def book_all(uow: UnitOfWork, postings: Sequence[Posting]) -> dict[LedgerAccountId, LedgerAccount]:
    """Book `postings` together, in order: the accounts to hold locked in one read, the postings,
    their entries and the hot accounts' changes written in one insert each, the held balances in
    one update. A refusal of any of them is raised before anything is written (the caller's unit
    of work then rolls back, or commits what it wrote before, which never includes the postings).
    Returns the held accounts, as the postings left them."""
    account_ids = {entry.account_id for posting in postings for entry in posting.entries}
    described = await uow.ledger.describe_accounts(account_ids)
    hold = to_hold(postings, described)  # raises UnknownLedgerAccount, CurrencyMismatch
    accounts = await uow.ledger.get_accounts_for_update(hold) if hold else {}
    rolled_up = account_ids - hold
    every = {**described, **accounts}
    now = uow.clock.now()
    try:
        balance_events, changes = post_all(postings, every, now=now, rolled_up=rolled_up)
    except Overdraft:
        # A held float's balance_cents leaves out what was paid into it since the last roll-up
        # (never money out: that is always held). Only now, found short, roll those in and look
        # again; the refusal, if it stands, has still written nothing.
        wallet = AccountKind.USER_WALLET
        guarded = [i for i in hold if accounts[i].no_overdraft and accounts[i].kind is not wallet]
        unrolled = await uow.ledger.unrolled_for_update(guarded)
        if not unrolled:
            raise
        for account_id, change in unrolled.items():
            accounts[account_id].roll_in(change)
        balance_events, changes = post_all(postings, every, now=now, rolled_up=rolled_up)
    await uow.ledger.add_postings(postings, changes)
    changed = list(dict.fromkeys(event.account_id for event in balance_events))  # in order, once each
    await uow.ledger.save_accounts(accounts[account_id] for account_id in changed)
    uow.record_events(balance_events)
    return accounts

"""Booking postings: hold the accounts that must be held, let the domain check and apply, write
it all.

Hot accounts: only the accounts a posting must serialise on (user wallets, a no-overdraft float
that money leaves: LedgerAccount.serialises) are locked and updated here, in one locked read and
one update. Every other account (FX, FX_SPREAD, fees, suspense, a float money comes into) gets
its change written beside the entries, and the roll-up adds it into the balance later: the
accounts every deposit touches are no longer a queue.

The floats money leaves, when the caller names floors (book_all's keep_above), are not locked
either: within an allowance this process holds on the float's headroom (a lease,
persistence/float_leases.py) the change is left to the roll-up too, like a hot account's, and no
two bookings queue on the float; else, when the change leaves the float well above its floor, it
is the unit of work's last statement, conditional on the floor, holding the float's row for a
COMMIT's time instead of the whole booking's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from application.unit_of_work import UnitOfWork
from domain.shared.ids import LedgerAccountId
from domain.wallet.account_kind import AccountKind
from domain.wallet.errors import Overdraft
from domain.wallet.ledger_account import LedgerAccount
from domain.wallet.posting import Posting
from domain.wallet.posting_service import net_changes, post_all


async def book(
    uow: UnitOfWork, posting: Posting, *, keep_above: Mapping[AccountKind, int] | None = None
) -> dict[LedgerAccountId, LedgerAccount]:
    """Book `posting` inside `uow` (the caller commits). Raises the domain's refusal
    (Overdraft, CurrencyMismatch, ...) before anything is written. Returns the accounts it
    held, as they are after the posting (no need to read them again). `keep_above`: book_all's."""
    return await book_all(uow, [posting], keep_above=keep_above)


async def book_all(
    uow: UnitOfWork,
    postings: Sequence[Posting],
    *,
    keep_above: Mapping[AccountKind, int] | None = None,
) -> dict[LedgerAccountId, LedgerAccount]:
    """Book `postings` together, in order: the accounts to hold locked in one read, the postings,
    their entries and the hot accounts' changes written in one insert each, the held balances in
    one update. A refusal of any of them is raised before anything is written (the caller's unit
    of work then rolls back, or commits what it wrote before, which never includes the postings).
    Returns the held accounts, as the postings left them.

    `keep_above` (a floor per kind of no-overdraft system account, e.g. the floats' low
    thresholds): such an account money leaves is not locked when this process believes the change
    keeps it at or above its floor (and 0); the change is written as the unit of work's last
    statement, added to the balance where that holds (the lock lasts to the COMMIT only), and the
    account is not among those returned (nothing about it to tell: it stays above its floor). If
    it did not hold, the commit fails with FloorNotKept and the next booking locks the account."""
    account_ids = {entry.account_id for posting in postings for entry in posting.entries}
    described = await uow.ledger.describe_accounts(account_ids)
    net = net_changes(postings, described)  # raises UnknownLedgerAccount, CurrencyMismatch
    hold = {i for i, change in net.items() if described[i].serialises(change)}
    floors = {
        i: max(0, keep_above.get(described[i].kind, 0))
        for i in hold
        if keep_above is not None and described[i].kind is not AccountKind.USER_WALLET
    }
    leased = {i for i, floor in floors.items() if await uow.ledger.lease(i, net[i], floor)}
    last = {
        i: (net[i], floor)
        for i, floor in floors.items()
        if i not in leased and uow.ledger.keeps_floor(i, net[i], floor)
    }
    hold -= leased | last.keys()
    accounts = await _lock(uow, hold, described)
    rolled_up = account_ids - hold
    every = {**described, **accounts}
    now = uow.clock.now()
    wallet = AccountKind.USER_WALLET
    guarded = [i for i in hold if accounts[i].no_overdraft and accounts[i].kind is not wallet]
    try:
        balance_events, changes = post_all(postings, every, now=now, rolled_up=rolled_up)
        _spare_leases(uow, accounts, guarded)
    except Overdraft:
        # A held float's balance_cents leaves out what was paid into it since the last roll-up
        # (never money out: that is always held). Only now, found short, roll those in and look
        # again; the refusal, if it stands, has still written nothing.
        unrolled = await uow.ledger.unrolled_for_update(guarded)
        if not unrolled:
            raise
        for account_id, change in unrolled.items():
            accounts[account_id].roll_in(change)
        balance_events, changes = post_all(postings, every, now=now, rolled_up=rolled_up)
        _spare_leases(uow, accounts, guarded)
    await uow.ledger.add_postings(postings, [c for c in changes if c.account_id not in last])
    changed = list(dict.fromkeys(event.account_id for event in balance_events))  # in order, once each
    held = [accounts[account_id] for account_id in changed]
    if last:
        uow.ledger.change_last(last, held)
    else:
        await uow.ledger.save_accounts(held)
    uow.record_events(balance_events)
    return accounts


def _spare_leases(
    uow: UnitOfWork, accounts: Mapping[LedgerAccountId, LedgerAccount], guarded: Sequence[LedgerAccountId]
) -> None:
    """A held float must keep what its leases may still book: that money is spent already."""
    for account_id in guarded:
        account = accounts[account_id]
        if account.balance_minor < uow.ledger.leased(account_id):
            raise Overdraft(f"{account.code} would overdraw once its leases have booked their allowance")


async def _lock(
    uow: UnitOfWork, hold: set[LedgerAccountId], described: Mapping[LedgerAccountId, LedgerAccount]
) -> dict[LedgerAccountId, LedgerAccount]:
    """Lock `hold`: the wallets, then the other accounts (each read in id order). A booking that
    writes a float last has locked its wallet first; one locking both in id order alone could
    hold the float while waiting for that wallet, which waits for the float: a deadlock."""
    if not hold:
        return {}
    wallets = {i for i in hold if described[i].kind is AccountKind.USER_WALLET}
    if not wallets or wallets == hold:
        return await uow.ledger.get_accounts_for_update(hold)
    return {
        **await uow.ledger.get_accounts_for_update(wallets),
        **await uow.ledger.get_accounts_for_update(hold - wallets),
    }

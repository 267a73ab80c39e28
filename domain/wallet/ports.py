"""Ports of the wallet context, implemented by persistence (PEC 7)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from domain.shared.ids import LedgerAccountId, UserId
from domain.wallet.account_kind import AccountKind
from domain.wallet.ledger_account import LedgerAccount
from domain.wallet.money import Currency
from domain.wallet.posting import Posting
from domain.wallet.posting_service import RolledUpChange


class LedgerRepository(Protocol):
    async def get_accounts_for_update(
        self, ids: Collection[LedgerAccountId]
    ) -> dict[LedgerAccountId, LedgerAccount]:
        """Lock and load these accounts (in id order, to avoid deadlocks); missing ids are absent."""
        ...

    async def describe_accounts(
        self, ids: Collection[LedgerAccountId]
    ) -> dict[LedgerAccountId, LedgerAccount]:
        """What these accounts are (kind, currency, rule), without locking them: enough to check a
        posting's lines and decide which accounts it must hold. Their balances are not to be used
        (an implementation may remember accounts, which never change but for their balance)."""
        ...

    async def unrolled_for_update(self, ids: Collection[LedgerAccountId]) -> dict[LedgerAccountId, int]:
        """For accounts this unit of work holds: lock their changes not yet rolled up and return
        their sum per account; the next save_accounts rolls them in (writes them off the list)."""
        ...

    async def get_or_create_account(
        self, *, kind: AccountKind, currency: Currency, user_id: UserId | None = None
    ) -> LedgerAccount:
        """The user's wallet (kind USER_WALLET, user_id given) or the system account of that kind."""
        ...

    async def open_wallets(self, user_id: UserId, currencies: Iterable[Currency]) -> None:
        """Create a new user's wallets (none exists yet), in the caller's unit of work."""
        ...

    async def account_id(
        self, *, kind: AccountKind, currency: Currency, user_id: UserId | None = None
    ) -> LedgerAccountId:
        """The id of get_or_create_account's account. An account, once committed, keeps its id
        forever, so an implementation may remember ids instead of reading them every posting."""
        ...

    async def add_posting(self, posting: Posting) -> None: ...

    async def add_postings(
        self, postings: Sequence[Posting], rolled_up: Sequence[RolledUpChange] = ()
    ) -> None:
        """Write these postings and all their entries (one insert each where the store allows),
        and the changes of accounts left to the roll-up."""
        ...

    async def save_accounts(self, accounts: Iterable[LedgerAccount]) -> None:
        """Persist balances with an optimistic version check (ConcurrentModification)."""
        ...

    async def lease(self, account_id: LedgerAccountId, change_minor: int, floor_minor: int) -> bool:
        """Whether this change of a no-overdraft system account (money out: `change_minor` < 0) is
        booked within an allowance this process holds on its headroom above `floor_minor` (a
        lease): then the account is neither locked nor updated, its change is left to the roll-up,
        and the lease is guarded in this unit of work. False: no lease covers it (or the store has
        none): the booking goes keeps_floor's way or locks the account."""
        ...

    async def recall_leases(self, account_id: LedgerAccountId) -> None:
        """Retire every lease on this account, whoever holds it, before money is taken out of it
        by people (its whole headroom theirs to take). Not in this unit of work: call it before the
        booking locks anything."""
        ...

    def leased(self, account_id: LedgerAccountId) -> int:
        """For an account read locked in this unit of work: what its unretired leases may still
        book (a balance below it would overdraw once they have)."""
        ...

    def keeps_floor(self, account_id: LedgerAccountId, change_minor: int, floor_minor: int) -> bool:
        """Whether, as far as this process knows without a read, changing the account (a no-overdraft
        system account) by `change_minor` leaves it at or above `floor_minor`: the guess on which a
        booking leaves it unlocked (change_last). A wrong guess costs a retry, never money."""
        ...

    def change_last(
        self,
        changes: Mapping[LedgerAccountId, tuple[int, int]],
        held: Iterable[LedgerAccount],
    ) -> None:
        """Instead of save_accounts: `held` (locked, applied) and, per unlocked account, its
        (change, floor) written by write_last as the unit of work's last statement; an account the
        change would take below its floor fails it all there (FloorNotKept)."""
        ...

    async def write_last(self) -> None:
        """change_last's writes, if any: called by the unit of work right before COMMIT."""
        ...

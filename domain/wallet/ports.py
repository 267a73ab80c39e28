"""Ports of the wallet context, implemented by persistence (PEC 7)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Protocol

from domain.shared.ids import LedgerAccountId, UserId
from domain.wallet.account_kind import AccountKind
from domain.wallet.ledger_account import LedgerAccount
from domain.wallet.money import Currency
from domain.wallet.posting import Posting


class LedgerRepository(Protocol):
    async def get_accounts_for_update(
        self, ids: Collection[LedgerAccountId]
    ) -> dict[LedgerAccountId, LedgerAccount]:
        """Lock and load these accounts (in id order, to avoid deadlocks); missing ids are absent."""
        ...

    async def get_or_create_account(
        self, *, kind: AccountKind, currency: Currency, user_id: UserId | None = None
    ) -> LedgerAccount:
        """The user's wallet (kind USER_WALLET, user_id given) or the system account of that kind."""
        ...

    async def account_id(
        self, *, kind: AccountKind, currency: Currency, user_id: UserId | None = None
    ) -> LedgerAccountId:
        """The id of get_or_create_account's account. An account, once committed, keeps its id
        forever, so an implementation may remember ids instead of reading them every posting."""
        ...

    async def add_posting(self, posting: Posting) -> None: ...

    async def add_postings(self, postings: Sequence[Posting]) -> None:
        """Write these postings and all their entries (one insert each where the store allows)."""
        ...

    async def save_accounts(self, accounts: Iterable[LedgerAccount]) -> None:
        """Persist balances with an optimistic version check (ConcurrentModification)."""
        ...

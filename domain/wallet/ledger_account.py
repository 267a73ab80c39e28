"""LedgerAccount aggregate: one account in one currency with a running balance.

Balance convention (one rule for every account): balance_minor is kept on the account's
normal side, i.e. sum(normal-side entries) - sum(other-side entries). For a user wallet
(credit-normal) it is what PenPay owes the user; for the M-Pesa float (debit-normal) it
is the money PenPay holds at M-Pesa. So "no overdraft" always means "balance >= 0".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from domain.shared.clock import require_utc, utc_now
from domain.shared.errors import InvalidValue
from domain.shared.ids import LedgerAccountId, PostingId, UserId
from domain.wallet.account_kind import AccountKind, LedgerSide
from domain.wallet.errors import CurrencyMismatch, Overdraft, UnknownLedgerAccount
from domain.wallet.events import BalanceChanged
from domain.wallet.ledger_entry import LedgerEntry
from domain.wallet.money import Currency, Money


def user_wallet_code(user_id: UserId, currency: Currency) -> str:
    return f"user:{user_id}:{currency.value}"


def system_account_code(kind: AccountKind, currency: Currency) -> str:
    return f"system:{kind.value.lower()}:{currency.value}"


@dataclass(eq=False, kw_only=True)
class LedgerAccount:
    id: LedgerAccountId
    code: str
    kind: AccountKind
    currency: Currency
    user_id: UserId | None
    no_overdraft: bool
    balance_minor: int = 0
    version: int = 1
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        if (self.kind is AccountKind.USER_WALLET) != (self.user_id is not None):
            raise InvalidValue("a user wallet, and only a user wallet, belongs to a user", field="user_id")
        self.created_at = require_utc(self.created_at, "created_at")
        self.updated_at = self.created_at if self.updated_at is None else require_utc(self.updated_at)

    @classmethod
    def user_wallet(
        cls, user_id: UserId, currency: Currency, *, now: datetime | None = None
    ) -> LedgerAccount:
        return cls(
            id=LedgerAccountId.new(),
            code=user_wallet_code(user_id, currency),
            kind=AccountKind.USER_WALLET,
            currency=currency,
            user_id=user_id,
            no_overdraft=AccountKind.USER_WALLET.default_no_overdraft,
            created_at=now or utc_now(),
        )

    @classmethod
    def system(cls, kind: AccountKind, currency: Currency, *, now: datetime | None = None) -> LedgerAccount:
        if kind is AccountKind.USER_WALLET:
            raise UnknownLedgerAccount("user wallets are made with LedgerAccount.user_wallet")
        return cls(
            id=LedgerAccountId.new(),
            code=system_account_code(kind, currency),
            kind=kind,
            currency=currency,
            user_id=None,
            no_overdraft=kind.default_no_overdraft,
            created_at=now or utc_now(),
        )

    @property
    def normal_side(self) -> LedgerSide:
        return self.kind.normal_side

    @property
    def balance(self) -> Money:
        return Money(self.balance_minor, self.currency)

    def serialises(self, change_minor: int) -> bool:
        """Whether a posting changing this balance by `change_minor` must hold the account (lock
        it, check, update it) rather than leave the change to be rolled up later: a user's wallet
        always (what the user sees and spends), another account with the no-overdraft rule when
        money leaves it. Money coming in cannot overdraw, and an account with no such rule has
        nothing to check, so those changes need no order between postings."""
        return self.kind is AccountKind.USER_WALLET or (self.no_overdraft and change_minor < 0)

    def change_of(self, entries: Iterable[LedgerEntry]) -> int:
        """What these entries change the balance by (normal side), checked to be this account's
        and in its currency; no overdraft check (that needs the balance: `balance_after`)."""
        change = 0
        for entry in entries:
            if entry.account_id != self.id:
                raise UnknownLedgerAccount(f"entry {entry.id} is not for account {self.code}")
            if entry.amount.currency is not self.currency:
                raise CurrencyMismatch(
                    f"account {self.code} holds {self.currency}, not {entry.amount.currency}"
                )
            change += entry.signed_minor(self.normal_side)
        return change

    def roll_in(self, change_minor: int) -> None:
        """Add changes booked earlier without this account held (rolled up from their rows)."""
        self.balance_minor += change_minor

    def balance_after(self, entries: Iterable[LedgerEntry]) -> int:
        """The balance these entries would leave, checked but not applied."""
        new_balance = self.balance_minor + self.change_of(entries)
        if self.no_overdraft and new_balance < 0:
            raise Overdraft(
                f"account {self.code} would go to {Money(new_balance, self.currency)}; it cannot be overdrawn"
            )
        return new_balance

    def apply_entries(
        self, posting_id: PostingId, entries: Iterable[LedgerEntry], *, now: datetime | None = None
    ) -> BalanceChanged:
        """Apply all of one posting's entries for this account at once (the overdraft rule
        looks at the result, not at the order of lines inside the posting)."""
        self.balance_minor = self.balance_after(entries)
        self.version += 1
        self.updated_at = require_utc(now) if now is not None else utc_now()
        return BalanceChanged(
            account_id=self.id,
            currency=self.currency,
            balance_minor=self.balance_minor,
            posting_id=posting_id,
            version=self.version,
            occurred_at=self.updated_at,
        )

    def apply(self, entry: LedgerEntry, *, now: datetime | None = None) -> BalanceChanged:
        return self.apply_entries(entry.posting_id, (entry,), now=now)

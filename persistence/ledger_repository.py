"""LedgerRepository on SQLAlchemy Core: the hot path of every money movement.

Statements are built once at import (bindparam) because building them per call costs more
than the database round trips here (see ../shared/anchors/performance-facts.md).
Concurrency: accounts a posting must hold (user wallets; a no-overdraft float money leaves) are
read with SELECT ... FOR UPDATE in id order (no deadlock between two postings on the same pair),
and balances are written back with a version check. The other accounts (hot system accounts) are
neither locked nor updated: the posting inserts its change for each into ledger_balance_deltas,
in the same transaction, and ledger_rollup adds those into the balances later.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    Column,
    Engine,
    Row,
    Select,
    Update,
    bindparam,
    case,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.shared.clock import Clock
from domain.shared.errors import ConcurrentModification
from domain.shared.ids import LedgerAccountId, UserId
from domain.wallet.account_kind import AccountKind
from domain.wallet.errors import FloorNotKept
from domain.wallet.ledger_account import LedgerAccount, system_account_code, user_wallet_code
from domain.wallet.money import Currency
from domain.wallet.posting import Posting
from domain.wallet.posting_service import RolledUpChange
from persistence import float_leases, ledger_balances
from persistence.delete_by_ids import delete_by_ids
from persistence.tables import ledger_accounts, ledger_balance_deltas, ledger_entries, ledger_postings

_SELECT_FOR_UPDATE = (
    select(ledger_accounts)
    .where(ledger_accounts.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(ledger_accounts.c.id)
    .with_for_update()
)
# A plain read shows the balance with its changes not yet rolled up; only a locked read (whose
# account then has none pending but those unrolled_for_update takes) reads balance_cents alone.
_SELECT_BY_CODE: Select[Any] = select(
    *[c for c in ledger_accounts.c if c.name != "balance_cents"],
    ledger_balances.balance().label("balance_cents"),
).where(ledger_accounts.c.code == bindparam("code"))
_SELECT_BY_CODES: Select[Any] = select(
    *[c for c in ledger_accounts.c if c.name != "balance_cents"],
    ledger_balances.balance().label("balance_cents"),
).where(ledger_accounts.c.code.in_(bindparam("codes", expanding=True)))
_SELECT_LOCKED_BY_CODE = select(ledger_accounts).where(ledger_accounts.c.code == bindparam("code"))
_SELECT_BY_IDS = select(ledger_accounts).where(ledger_accounts.c.id.in_(bindparam("ids", expanding=True)))
_d = ledger_balance_deltas
_SELECT_UNROLLED_FOR_UPDATE = (
    select(_d.c.id, _d.c.account_id, _d.c.delta_cents)
    .where(_d.c.account_id.in_(bindparam("ids", expanding=True)))
    .with_for_update()
)
_INSERT_DELTA = insert(_d)
_SUM_UNROLLED = select(ledger_balances.unrolled(bindparam("account_id")))
_INSERT_ACCOUNT = insert(ledger_accounts)
_INSERT_POSTING = insert(ledger_postings)
_INSERT_ENTRY = insert(ledger_entries)
_UPDATE_BALANCE = (
    update(ledger_accounts)
    .where(
        ledger_accounts.c.id == bindparam("account_id"), ledger_accounts.c.version == bindparam("old_version")
    )
    .values(
        balance_cents=bindparam("balance_cents"),
        version=bindparam("new_version"),
        updated_at=bindparam("now"),
    )
)


def account_from_row(row: Row[Any]) -> LedgerAccount:
    return LedgerAccount(
        id=LedgerAccountId(row.id),
        code=row.code,
        kind=AccountKind(row.kind),
        currency=Currency(row.currency),
        user_id=UserId(row.user_id) if row.user_id is not None else None,
        no_overdraft=bool(row.no_overdraft),
        balance_minor=int(row.balance_cents),
        version=int(row.version),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def account_row(account: LedgerAccount) -> dict[str, Any]:
    return {
        "id": account.id.value,
        "code": account.code,
        "kind": account.kind.value,
        "currency": account.currency.value,
        "user_id": account.user_id.value if account.user_id else None,
        "normal_side": account.normal_side.value,
        "no_overdraft": account.no_overdraft,
        "balance_cents": account.balance_minor,
        "version": account.version,
        "created_at": account.created_at,
        "updated_at": account.updated_at,
    }


# Account code -> id, per database (engine), of accounts read back committed: a posting names its
# accounts by code, and reading each id every time was a statement per account per posting.
_KNOWN_IDS: weakref.WeakKeyDictionary[Engine, dict[str, LedgerAccountId]] = weakref.WeakKeyDictionary()
# Account id -> the account as once read committed (kind, currency, rule never change): what
# describe_accounts needs to check a posting and choose what to lock, without a read.
_KNOWN_ACCOUNTS: weakref.WeakKeyDictionary[Engine, dict[LedgerAccountId, LedgerAccount]] = (
    weakref.WeakKeyDictionary()
)
# Account id -> its balance as this process last knew it, for the no-overdraft system accounts
# (the floats): what keeps_floor guesses on. Set by every locked read, lowered by every change
# written last, forgotten when one found the floor not kept (so the next booking locks, reads).
_FLOOR_GUESSES: weakref.WeakKeyDictionary[Engine, dict[LedgerAccountId, int]] = weakref.WeakKeyDictionary()


@functools.cache
def _balances_update(held: int, changed: int) -> Update:
    """_write_balances' UPDATE of `held` version-checked accounts and `changed` floor-checked
    changes, built once per shape: built per call it was a tenth of a saga worker's CPU."""
    a = ledger_accounts.c

    def param(name: str, column: Column[Any]) -> BindParameter[Any]:
        return bindparam(name, type_=column.type)

    held_ids = [param(f"h{n}", a.id) for n in range(held)]
    change_ids = [param(f"c{n}", a.id) for n in range(changed)]
    amounts = [param(f"c{n}_change", a.balance_cents) for n in range(changed)]
    matched = [(a.id == held_ids[n]) & (a.version == param(f"h{n}_old", a.version)) for n in range(held)]
    matched += [
        # what the float's leases may still book counts as spent (float_leases.py)
        (a.id == change_ids[n])
        & (a.balance_cents - a.leased_cents + amounts[n] >= param(f"c{n}_floor", a.balance_cents))
        for n in range(changed)
    ]
    return (
        update(ledger_accounts)
        # the ids first: a range of the primary key, so no other row is read (and locked)
        .where(a.id.in_(held_ids + change_ids), or_(*matched))
        .values(
            balance_cents=case(
                *[(a.id == held_ids[n], param(f"h{n}_balance", a.balance_cents)) for n in range(held)],
                *[(a.id == change_ids[n], a.balance_cents + amounts[n]) for n in range(changed)],
            ),
            version=case(
                *[(a.id == held_ids[n], param(f"h{n}_version", a.version)) for n in range(held)],
                else_=a.version + 1,
            )
            if held
            else a.version + 1,  # a CASE with no WHEN is no SQL
            updated_at=param("now", a.updated_at),
        )
    )


def _code(kind: AccountKind, currency: Currency, user_id: UserId | None) -> str:
    return user_wallet_code(user_id, currency) if user_id is not None else system_account_code(kind, currency)


class SqlLedgerRepository:
    def __init__(self, connection: AsyncConnection, clock: Clock) -> None:
        self._connection = connection
        self._clock = clock
        # Version each account had when it was loaded: the optimistic check on save.
        self._loaded_versions: dict[LedgerAccountId, int] = {}
        # Accounts this unit of work created: not remembered, as it may still roll back.
        self._created: set[str] = set()
        # Rows of ledger_balance_deltas taken by unrolled_for_update, per account: deleted when
        # that account's balance (which now includes them) is saved.
        self._rolled_in: dict[LedgerAccountId, list[int]] = {}
        # change_last's changes (with their floors) and held accounts, for write_last.
        self._last: tuple[dict[LedgerAccountId, tuple[int, int]], list[LedgerAccount]] | None = None
        # leased_cents of each account read locked (what its leases may still book: not spendable)
        self._leased: dict[LedgerAccountId, int] = {}
        # float leases this unit of work's bookings are guarded by (their rows share-locked)
        self._guarded: set[object] = set()

    def _remember(self, accounts: Iterable[LedgerAccount]) -> None:
        known = _KNOWN_ACCOUNTS.setdefault(self._connection.sync_engine, {})
        for account in accounts:
            if account.code not in self._created:
                known.setdefault(account.id, dataclasses.replace(account))

    async def describe_accounts(
        self, ids: Collection[LedgerAccountId]
    ) -> dict[LedgerAccountId, LedgerAccount]:
        known = _KNOWN_ACCOUNTS.setdefault(self._connection.sync_engine, {})
        found = {i: dataclasses.replace(known[i]) for i in ids if i in known}
        missing = sorted(i.value for i in ids if i not in found)
        if missing:
            rows = await self._connection.execute(_SELECT_BY_IDS, {"ids": missing})
            read = [account_from_row(row) for row in rows]
            self._remember(read)
            found.update((account.id, account) for account in read)
        return found

    async def unrolled_for_update(self, ids: Collection[LedgerAccountId]) -> dict[LedgerAccountId, int]:
        # A locking read: the rows committed now, whatever this transaction's snapshot, and it
        # waits for any still being written (rare: only a float found short comes here).
        if not ids:
            return {}
        rows = (
            await self._connection.execute(_SELECT_UNROLLED_FOR_UPDATE, {"ids": sorted(i.value for i in ids)})
        ).all()
        sums: dict[LedgerAccountId, int] = {}
        for row in rows:
            account_id = LedgerAccountId(row.account_id)
            sums[account_id] = sums.get(account_id, 0) + int(row.delta_cents)
            self._rolled_in.setdefault(account_id, []).append(int(row.id))
        return sums

    async def account_id(
        self, *, kind: AccountKind, currency: Currency, user_id: UserId | None = None
    ) -> LedgerAccountId:
        known = _KNOWN_IDS.setdefault(self._connection.sync_engine, {})
        code = _code(kind, currency, user_id)
        found = known.get(code)
        if found is None and user_id is not None:
            # A booking names a user's wallets one by one (a deposit's credit: KES, then USD), and in
            # production most users are new to a process: one read learns all of them at once.
            await self._learn_wallets(user_id)
            found = known.get(code)
        if found is None:
            account = await self.get_or_create_account(kind=kind, currency=currency, user_id=user_id)
            found = account.id
            if code not in self._created:
                known[code] = found
                self._remember([account])  # what describe_accounts needs, read already
        return found

    async def _learn_wallets(self, user_id: UserId) -> None:
        """Remember the ids (and descriptions) of every wallet `user_id` has, committed."""
        codes = [user_wallet_code(user_id, currency) for currency in Currency]
        rows = await self._connection.execute(_SELECT_BY_CODES, {"codes": codes})
        accounts = [account_from_row(row) for row in rows]
        known = _KNOWN_IDS.setdefault(self._connection.sync_engine, {})
        for account in accounts:
            if account.code not in self._created:
                known[account.code] = account.id
        self._remember(accounts)

    async def get_accounts_for_update(
        self, ids: Collection[LedgerAccountId]
    ) -> dict[LedgerAccountId, LedgerAccount]:
        result = await self._connection.execute(_SELECT_FOR_UPDATE, {"ids": sorted(i.value for i in ids)})
        rows = result.all()
        accounts = [account_from_row(row) for row in rows]
        guesses = _FLOOR_GUESSES.setdefault(self._connection.sync_engine, {})
        for row in rows:
            self._leased[LedgerAccountId(row.id)] = int(row.leased_cents)
        for account in accounts:
            self._loaded_versions[account.id] = account.version
            if account.no_overdraft and account.kind is not AccountKind.USER_WALLET:
                guesses[account.id] = account.balance_minor  # committed, less what is not rolled up
            self._rolled_in.pop(account.id, None)  # read afresh: rows taken before are not in it
        self._remember(accounts)
        return {account.id: account for account in accounts}

    async def get_or_create_account(
        self, *, kind: AccountKind, currency: Currency, user_id: UserId | None = None
    ) -> LedgerAccount:
        code = _code(kind, currency, user_id)
        row = (await self._connection.execute(_SELECT_BY_CODE, {"code": code})).first()
        if row is not None:
            return account_from_row(row)
        now = self._clock.now()
        account = (
            LedgerAccount.user_wallet(user_id, currency, now=now)
            if user_id is not None
            else LedgerAccount.system(kind, currency, now=now)
        )
        if user_id is not None and self._connection.dialect.name != "sqlite":
            return await self._create_apart(account)
        try:
            # A system account, with what creates it (its funding); or SQLite (one writer: no
            # transaction beside ours). No savepoint: a duplicate fails this one insert, which then
            # wrote nothing, the transaction going on.
            await self._connection.execute(_INSERT_ACCOUNT, account_row(account))
            self._created.add(code)
        except IntegrityError:
            # Created concurrently: a locking read sees the latest committed row even under
            # REPEATABLE READ, where a plain read would still show our older snapshot.
            locked = await self._connection.execute(_SELECT_LOCKED_BY_CODE.with_for_update(), {"code": code})
            found = account_from_row(locked.one())
            # Committed after this transaction's snapshot: describe_accounts' plain read would not
            # see it (UnknownLedgerAccount: two first deposits of one user, the bench found), so it
            # is remembered, as any account read committed is.
            self._remember([found])
            found.balance_minor += int(
                (await self._connection.execute(_SUM_UNROLLED, {"account_id": found.id.value})).scalar_one()
            )
            return found
        return account

    async def open_wallets(self, user_id: UserId, currencies: Iterable[Currency]) -> None:
        """A new user's wallets, in its registration's transaction (one insert): nobody else can
        be creating them, so none of get_or_create_account's care for a concurrent creation."""
        now = self._clock.now()
        wallets = [LedgerAccount.user_wallet(user_id, currency, now=now) for currency in currencies]
        if wallets:
            await self._connection.execute(_INSERT_ACCOUNT, [account_row(wallet) for wallet in wallets])
            self._created.update(wallet.code for wallet in wallets)

    async def _create_apart(self, account: LedgerAccount) -> LedgerAccount:
        """A user's wallet created in a short transaction of its own, committed before ours goes on.
        Inside ours, two first deposits of one user both inserted the wallet's code: after the
        first insert committed, the other two each held a share lock on it from their duplicate
        check and then deadlocked on their locking reads (6 deadlocks in a bench run of 100). An
        account with no postings changes no balance; what is read back is committed, remembered
        as such (describe_accounts' plain read, on our older snapshot, would not see it)."""
        async with self._connection.engine.connect() as apart:
            try:
                await apart.execute(_INSERT_ACCOUNT, account_row(account))
                await apart.commit()
            except IntegrityError:
                await apart.rollback()  # created meanwhile: read it below
            found = account_from_row((await apart.execute(_SELECT_BY_CODE, {"code": account.code})).one())
            await apart.rollback()
        self._remember([found])
        return found

    async def add_posting(self, posting: Posting) -> None:
        await self.add_postings([posting])

    async def add_postings(
        self, postings: Sequence[Posting], rolled_up: Sequence[RolledUpChange] = ()
    ) -> None:
        """Every posting in one insert, every entry of them in another, the changes left to the
        roll-up in a third."""
        if not postings:
            return
        await self._connection.execute(
            _INSERT_POSTING,
            [
                {
                    "id": posting.id.value,
                    "transaction_id": _transaction_id(posting),
                    "description": posting.description,
                    "reverses_posting_id": posting.reverses.value if posting.reverses else None,
                    "created_at": posting.created_at,
                }
                for posting in postings
            ],
        )
        await self._connection.execute(
            _INSERT_ENTRY,
            [
                {
                    "id": entry.id.value,
                    "posting_id": posting.id.value,
                    "account_id": entry.account_id.value,
                    "side": entry.side.value,
                    "amount_cents": entry.amount.amount_minor,
                    "amount_currency": entry.amount.currency.value,
                    "transaction_id": _transaction_id(posting),
                    "created_at": entry.created_at,
                }
                for posting in postings
                for entry in posting.entries
            ],
        )
        if rolled_up:
            await self._connection.execute(
                _INSERT_DELTA,
                [
                    {
                        "account_id": change.account_id.value,
                        "posting_id": change.posting_id.value,
                        "delta_cents": change.change_minor,
                    }
                    for change in rolled_up
                ],
            )

    async def save_accounts(self, accounts: Iterable[LedgerAccount]) -> None:
        """Every balance in one UPDATE (a CASE per column), each row matched with the version it
        was read at: fewer rows matched than accounts given means one changed meanwhile."""
        await self._write_balances(accounts, {})

    async def lease(self, account_id: LedgerAccountId, change_minor: int, floor_minor: int) -> bool:
        if change_minor >= 0 or not float_leases.supported(self._connection):
            return False
        return await float_leases.reserve(
            self._connection, account_id, -change_minor, floor_minor, self._clock.now(), self._guarded
        )

    async def recall_leases(self, account_id: LedgerAccountId) -> None:
        if float_leases.supported(self._connection):
            await float_leases.recall(self._connection.engine, account_id, self._clock.now())

    def leased(self, account_id: LedgerAccountId) -> int:
        return self._leased.get(account_id, 0)

    def keeps_floor(self, account_id: LedgerAccountId, change_minor: int, floor_minor: int) -> bool:
        guess = _FLOOR_GUESSES.get(self._connection.sync_engine, {}).get(account_id)
        return guess is not None and guess + change_minor >= floor_minor

    def change_last(
        self,
        changes: Mapping[LedgerAccountId, tuple[int, int]],
        held: Iterable[LedgerAccount],
    ) -> None:
        if self._last is not None:
            raise RuntimeError("one change_last per unit of work: book the postings together")
        self._last = (dict(changes), list(held))

    async def write_last(self) -> None:
        """change_last's statement: the held balances (as save_accounts) and each change added to
        its account's balance where that keeps the floor, in one UPDATE. Sent last, just before
        COMMIT, it takes the accounts' row locks for that instant only."""
        last, self._last = self._last, None
        if last is not None:
            await self._write_balances(last[1], last[0])

    async def _write_balances(
        self, accounts: Iterable[LedgerAccount], changes: Mapping[LedgerAccountId, tuple[int, int]]
    ) -> None:
        """`accounts` (held: version-checked, their rolled-in changes deleted) and `changes`
        ((change, floor) per unheld account, applied where the floor holds), in one UPDATE."""
        changed = list({account.id: account for account in accounts}.values())
        if not changed and not changes:
            return
        old: dict[LedgerAccountId, int] = {}
        for account in changed:
            version = self._loaded_versions.get(account.id)
            if version is None:
                raise ConcurrentModification(f"account {account.code} was not loaded for update")
            old[account.id] = version
        rolled_in = [row for account in changed for row in self._rolled_in.pop(account.id, [])]
        if rolled_in:
            # locked by unrolled_for_update, so all still there: now part of the balance saved
            await delete_by_ids(self._connection, _d, rolled_in)
        now: datetime = self._clock.now()
        if len(changed) == 1 and not changes:
            account = changed[0]
            result = await self._connection.execute(
                _UPDATE_BALANCE,
                {
                    "account_id": account.id.value,
                    "old_version": old[account.id],
                    "new_version": account.version,
                    "balance_cents": account.balance_minor,
                    "now": now,
                },
            )
        else:
            params: dict[str, Any] = {"now": now}
            for n, account in enumerate(changed):
                params |= {f"h{n}": account.id.value, f"h{n}_old": old[account.id]}
                params |= {f"h{n}_balance": account.balance_minor, f"h{n}_version": account.version}
            for n, (account_id, (change, floor)) in enumerate(changes.items()):
                params |= {f"c{n}": account_id.value, f"c{n}_change": change, f"c{n}_floor": floor}
            result = await self._connection.execute(_balances_update(len(changed), len(changes)), params)
        guesses = _FLOOR_GUESSES.setdefault(self._connection.sync_engine, {})
        if result.rowcount != len(changed) + len(changes):
            codes = ", ".join(account.code for account in changed)
            if not changes:
                raise ConcurrentModification(f"an account of {codes} changed since it was read")
            for account_id in changes:
                guesses.pop(account_id, None)  # the next booking locks and reads it
            raise FloorNotKept(
                f"an account booked without a lock would not keep its floor (or one of {codes} moved)"
            )
        for account in changed:
            self._loaded_versions[account.id] = account.version
            if account.id in guesses:
                guesses[account.id] = account.balance_minor
        for account_id, (change, _) in changes.items():
            if account_id in guesses:
                guesses[account_id] += change


def _transaction_id(posting: Posting) -> Any:
    return posting.transaction_id.value if posting.transaction_id else None

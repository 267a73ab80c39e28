"""Float leases: a process books money out of a no-overdraft float without queueing on its row.

Every deposit's credit pays out of the one Deriv agent float. Written last and conditional on its
floor, the float's row was still held from that UPDATE to the COMMIT, and two credits at once
queued there: nearly all of the row-lock waits a deposit cost. Instead a process takes an
allowance out of the float's headroom (a lease, in a short transaction of its own, holding the row
for that instant) and books money out within it as a pending change (ledger_balance_deltas, rolled
up later like the hot accounts'), holding only a shared lock on its lease's row to its COMMIT.

The rule that keeps the floor (B: the float's balance_cents; D: its pending changes; L: its
leased_cents, the allowances of its unretired leases, each booking at most its own, counted by its
one process in memory): whatever a lease has booked is in D and still counted in L, so

    B + D - L >= floor     whenever a lease is taken (its share of that headroom, read under the
                           float's row lock), and for a booking outside every lease (its condition
                           counts L as spent: B - L + change >= floor, or the held float's check)

keeps the balance B + D at or above the floor however the unretired leases book. A lease is
retired (its row locked exclusively: after every booking under it has committed; none after) with
the float's pending changes rolled in and its allowance given back. Its owner retires it when
spent or near its expiry, and at shutdown; anyone (the relay's roll-up) retires a lease long past
its expiry (a process that died with one). An allowance a rolled-back booking had taken is not
given back: a lease only ever books less than it may (safe, and rare).

MariaDB only: on SQLite (one writer), a lease's own transaction would wait on the booking's.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.shared.ids import LedgerAccountId, new_uuid7
from persistence import ledger_balances
from persistence.delete_by_ids import delete_by_ids
from persistence.tables import float_leases, ledger_accounts, ledger_balance_deltas

log = structlog.get_logger("penpay.float_leases")

# How long a lease lives; its owner stops booking under it MARGIN before (clocks and a slow commit).
TTL = timedelta(seconds=30)
MARGIN = timedelta(seconds=5)
# A lease takes this share of the headroom left (so the processes share it), at most its
# currency's cap (minor units): larger payouts than a lease can hold go the float's own way.
SHARE = 4
CAPS = {"USD": 5_000_00, "KES": 500_000_00}
# Anyone retires a lease this long past its expiry (its owner has died, or stopped using it).
ABANDONED_AFTER = timedelta(seconds=30)

_l, _a, _d = float_leases, ledger_accounts, ledger_balance_deltas
_OWNER = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

_LOCK_FLOAT = select(_a.c.id).where(_a.c.id == bindparam("b_id")).with_for_update()
# Read plainly after the lock: its snapshot sees the float as locked, and what was paid into it and
# not rolled up yet (pending money out is all under unretired leases: counted in leased_cents)
_HEADROOM = select(ledger_balances.balance().label("balance"), _a.c.leased_cents, _a.c.currency).where(
    _a.c.id == bindparam("b_id")
)
_LEASE_OUT = (
    update(_a)
    .where(_a.c.id == bindparam("b_id"))
    .values(leased_cents=_a.c.leased_cents + bindparam("allowance"), version=_a.c.version + 1)
)
_INSERT = _l.insert()
# A booking's guard: the lease is not retired, and stays so until this database transaction ends.
GUARD = (
    select(_l.c.id)
    .where(_l.c.id == bindparam("lease_id"), _l.c.retired_at.is_(None))
    .with_for_update(read=True)
)
_LOCK_LEASE = (
    select(_l.c.account_id, _l.c.allowance_cents)
    .where(_l.c.id == bindparam("lease_id"), _l.c.retired_at.is_(None))
    .with_for_update()
)
_PENDING = select(_d.c.id, _d.c.delta_cents).where(_d.c.account_id == bindparam("b_id")).with_for_update()
_GIVE_BACK = (
    update(_a)
    .where(_a.c.id == bindparam("b_id"))
    .values(
        balance_cents=_a.c.balance_cents + bindparam("rolled"),
        leased_cents=_a.c.leased_cents - bindparam("allowance"),
        version=_a.c.version + 1,
        updated_at=bindparam("now"),
    )
)
_RETIRE = update(_l).where(_l.c.id == bindparam("lease_id")).values(retired_at=bindparam("now"))
_UNRETIRED = select(_l.c.id).where(_l.c.account_id == bindparam("b_id"), _l.c.retired_at.is_(None))
_ABANDONED = select(_l.c.id).where(_l.c.retired_at.is_(None), _l.c.expires_at < bindparam("before"))


@dataclass(frozen=True, slots=True)
class LeaseAudit:
    """What the continuous auditor finds wrong with the leases (workers/auditor.py)."""

    # (account code, its leased_cents, the allowances of its unretired leases), where they differ
    mismatched: tuple[tuple[str, int, int], ...]
    # (lease id, account code, expires_at) of unretired leases the relay should have retired
    abandoned: tuple[tuple[str, str, datetime], ...]


_LEASED_TOTALS = (
    select(
        _a.c.code,
        _a.c.leased_cents,
        func.coalesce(func.sum(_l.c.allowance_cents), 0).label("allowances"),
    )
    .select_from(_a.outerjoin(_l, (_l.c.account_id == _a.c.id) & _l.c.retired_at.is_(None)))
    .where((_a.c.leased_cents != 0) | _l.c.id.is_not(None))
    .group_by(_a.c.id, _a.c.code, _a.c.leased_cents)
)
_LONG_EXPIRED = (
    select(_l.c.id, _a.c.code, _l.c.expires_at)
    .select_from(_l.join(_a, _a.c.id == _l.c.account_id))
    .where(_l.c.retired_at.is_(None), _l.c.expires_at < bindparam("before"))
    .order_by(_l.c.expires_at)
)


async def audit(connection: AsyncConnection, now: datetime, *, grace: timedelta) -> LeaseAudit:
    """In one snapshot: each float's leased_cents against its unretired leases' allowances (taking
    and retiring change both in one transaction), and the leases still unretired `grace` after the
    relay should have retired them (ABANDONED_AFTER past their expiry)."""
    totals = (await connection.execute(_LEASED_TOTALS)).all()
    mismatched = tuple(
        (row.code, int(row.leased_cents), int(row.allowances))
        for row in totals
        if int(row.leased_cents) != int(row.allowances)
    )
    before = now - ABANDONED_AFTER - grace
    expired = (await connection.execute(_LONG_EXPIRED, {"before": before})).all()
    return LeaseAudit(mismatched, tuple((str(row.id), row.code, row.expires_at) for row in expired))


@dataclass(slots=True)
class Lease:
    id: object  # the row's UUID
    remaining: int
    use_until: datetime


# This process's lease per float, per database (engine), and the lock its bookings take a new one
# under (one takes it, the others then book within it: not one lease each, queued on the float)
_HELD: weakref.WeakKeyDictionary[Engine, dict[LedgerAccountId, Lease]] = weakref.WeakKeyDictionary()
_TAKING: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


def supported(bind: AsyncConnection | AsyncEngine) -> bool:
    return bind.dialect.name in ("mysql", "mariadb")


async def reserve(
    connection: AsyncConnection,
    account_id: LedgerAccountId,
    amount: int,
    floor: int,
    now: datetime,
    guarded: set[object],
) -> bool:
    """Take `amount` (cents, > 0) out of this process's lease on the float, taking a new lease when
    the one held cannot cover it, and guard the lease in `connection`'s transaction (the booking's;
    `guarded`: the leases it guards already, added to). False: no lease covers it (the float's
    headroom is too small, the lease was retired meanwhile, or another booking of this process is
    taking the next one): the booking goes the float's own way. The spent lease's retirement waits
    for the bookings under it and for the float's pending changes not yet committed: the booking's
    own unit of work must hold neither (a lease it guards is left to expire; a float is booked once
    per unit of work, by book_all, before it writes any pending change of that float)."""
    engine = connection.engine
    held = _HELD.setdefault(connection.sync_engine, {})
    lease = held.get(account_id)
    if not _covers(lease, amount, now):
        taking = _TAKING.setdefault(connection.sync_engine, asyncio.Lock())
        if taking.locked():
            # Another booking of this process is taking the next lease, on a connection of the
            # pool this booking holds one of: waiting here would hold it idle, and a burst of
            # waiters drained the pool the taker needed (all stalled for its 30 s timeout). The
            # float's own way costs its row lock instead. (No await between the check and the
            # acquiring below: a lock found free is taken at once.)
            return False
        async with taking:
            lease = held.get(account_id)  # another booking may have taken one meanwhile
            if not _covers(lease, amount, now):
                if lease is not None:
                    del held[account_id]
                    if lease.id not in guarded:  # else its retirement would wait on this booking
                        await retire(engine, lease.id, now)  # (left to expire, then the relay's)
                lease = await take(engine, account_id, amount, floor, now)
                if lease is None:
                    return False
                held[account_id] = lease
    assert lease is not None
    lease.remaining -= amount  # before any await: no other booking of this process can take it too
    if (await connection.execute(GUARD, {"lease_id": lease.id})).first() is None:
        if held.get(account_id) is lease:  # retired by someone else (it was abandoned): forget it
            del held[account_id]
        return False
    guarded.add(lease.id)
    return True


def _covers(lease: Lease | None, amount: int, now: datetime) -> bool:
    return lease is not None and lease.remaining >= amount and now < lease.use_until


async def take(
    engine: AsyncEngine, account_id: LedgerAccountId, at_least: int, floor: int, now: datetime
) -> Lease | None:
    """A new lease on the float: its share of the headroom (B - L - floor), capped; None when that
    share is less than `at_least`."""
    async with engine.connect() as connection:
        if (await connection.execute(_LOCK_FLOAT, {"b_id": account_id.value})).first() is None:
            await connection.rollback()
            return None
        row = (await connection.execute(_HEADROOM, {"b_id": account_id.value})).one()
        headroom = int(row.balance) - int(row.leased_cents) - floor
        allowance = min(CAPS.get(row.currency, 0), headroom // SHARE)
        if allowance < at_least:  # near the floor: the float's own way, a booking at a time
            await connection.rollback()
            return None
        lease_id = new_uuid7()
        await connection.execute(_LEASE_OUT, {"b_id": account_id.value, "allowance": allowance})
        await connection.execute(
            _INSERT,
            {
                "id": lease_id,
                "account_id": account_id.value,
                "owner": _OWNER,
                "allowance_cents": allowance,
                "created_at": now,
                "expires_at": now + TTL,
                "retired_at": None,
            },
        )
        await connection.commit()
    return Lease(lease_id, allowance, now + TTL - MARGIN)


async def retire(engine: AsyncEngine, lease_id: object, now: datetime) -> bool:
    """Retire a lease: once every booking under it has committed (its row locked exclusively), the
    float's pending changes rolled into its balance and the allowance given back. False: retired
    already."""
    async with engine.connect() as connection:
        lease = (await connection.execute(_LOCK_LEASE, {"lease_id": lease_id})).first()
        if lease is None:
            await connection.rollback()
            return False
        account = lease.account_id
        await connection.execute(_LOCK_FLOAT, {"b_id": account})
        pending = (await connection.execute(_PENDING, {"b_id": account})).all()
        if pending:
            await delete_by_ids(connection, _d, [row.id for row in pending])
        await connection.execute(
            _GIVE_BACK,
            {
                "b_id": account,
                "rolled": sum(int(row.delta_cents) for row in pending),
                "allowance": int(lease.allowance_cents),
                "now": now,
            },
        )
        await connection.execute(_RETIRE, {"lease_id": lease_id, "now": now})
        await connection.commit()
    return True


async def recall(engine: AsyncEngine, account_id: LedgerAccountId, now: datetime) -> int:
    """Retire every lease on the float, whoever holds it (money taken out of the float by people:
    all of its headroom theirs to take); how many. Their owners' next bookings find them retired."""
    async with engine.connect() as connection:
        ids = list((await connection.execute(_UNRETIRED, {"b_id": account_id.value})).scalars())
        await connection.rollback()
    held = _HELD.get(engine.sync_engine, {})
    if account_id in held and held[account_id].id in ids:
        del held[account_id]
    retired = 0
    for lease_id in ids:
        retired += await retire(engine, lease_id, now)
    return retired


async def retire_abandoned(engine: AsyncEngine, now: datetime) -> int:
    """Retire every lease long past its expiry (its process died holding it); how many."""
    if not supported(engine):
        return 0
    async with engine.connect() as connection:
        ids = list((await connection.execute(_ABANDONED, {"before": now - ABANDONED_AFTER})).scalars())
        await connection.rollback()
    retired = 0
    for lease_id in ids:
        retired += await retire(engine, lease_id, now)
    if retired:
        log.info("float_leases.abandoned_retired", count=retired)
    return retired


async def retire_held(engine: AsyncEngine, now: datetime) -> None:
    """Retire this process's leases on `engine` (at shutdown): their allowance back at once."""
    held = _HELD.pop(engine.sync_engine, {})
    for lease in held.values():
        try:
            await retire(engine, lease.id, now)
        except Exception as error:  # left to expire: retired by the next roll-up after that
            log.warning("float_leases.not_retired", lease_id=str(lease.id), error=type(error).__name__)

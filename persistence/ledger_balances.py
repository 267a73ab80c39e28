"""An account's balance in SQL: balance_cents plus its changes not yet rolled up.

Hot accounts (migration 0026) are not updated by the postings that touch them: each posting
writes its change to ledger_balance_deltas, and the roll-up adds those rows into balance_cents
later. Every reader of a balance uses these expressions, never balance_cents alone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.sql.util import ClauseAdapter

from persistence.tables import ledger_accounts, ledger_balance_deltas

_d = ledger_balance_deltas


def unrolled(account_id: ColumnElement[Any]) -> ColumnElement[int]:
    """The account's changes not yet rolled up (0 when none), as a correlated subquery."""
    return (
        select(func.coalesce(func.sum(_d.c.delta_cents), 0))
        .where(_d.c.account_id == account_id)
        .scalar_subquery()
    )


def balance(accounts: Table = ledger_accounts) -> ColumnElement[int]:
    """The balance of the row of `accounts` (ledger_accounts or an alias of it)."""
    return accounts.c.balance_cents + unrolled(accounts.c.id)


def unrolled_total(*where: ColumnElement[bool]) -> ColumnElement[int]:
    """The sum of not-yet-rolled-up changes over the ledger_accounts rows matching `where` (to
    add to a SUM(balance_cents) over the same rows), as a scalar subquery."""
    a = ledger_accounts.alias("unrolled_accounts")
    return (
        select(func.coalesce(func.sum(_d.c.delta_cents), 0))
        .select_from(_d.join(a, a.c.id == _d.c.account_id))
        .where(*[_rebind(c, a) for c in where])
        .scalar_subquery()
    )


def _rebind(condition: ColumnElement[bool], alias: Any) -> ColumnElement[bool]:
    adapted: ColumnElement[bool] = ClauseAdapter(alias).traverse(condition)
    return adapted

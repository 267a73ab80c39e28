"""Every ledger account: its stored balance is its entries', it is set up as its kind says, and
one that may not be overdrawn is not. Also the balances by kind the report lists.

  ACCOUNT_MISCONFIGURED    normal_side is not the kind's (domain AccountKind), an unknown
                           kind, or a user wallet without a user (or a system account with one)
  BALANCE_MISMATCH         the balance != sum(entries on the normal side) - sum(the others), where
                           the balance is balance_cents + the account's changes not yet rolled up
                           (ledger_balance_deltas: hot accounts, migration 0026)
  UNROLLED_MISMATCH        a change waiting for the roll-up that is not what its posting's entries
                           on that account make, or that belongs to a user wallet (always held,
                           never rolled up), an unknown account or an unknown posting
  NEGATIVE_BALANCE         an account that may not be overdrawn (no_overdraft, or a kind whose
                           default is no-overdraft: user wallets and both floats) is below zero,
                           stored or recomputed
"""

from __future__ import annotations

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.wallet.account_kind import AccountKind
from persistence.consistency.collector import Collector, money
from persistence.consistency.queries import DEBIT, NO_OVERDRAFT_KINDS, as_int, signed
from persistence.consistency.report import Code
from persistence.tables import ledger_accounts as _a
from persistence.tables import ledger_balance_deltas as _d
from persistence.tables import ledger_entries as _e
from persistence.tables import ledger_postings as _p


async def check_accounts(connection: AsyncConnection, out: Collector) -> None:
    per_account = (
        select(_e.c.account_id.label("account_id"), func.sum(signed()).label("net"))
        .group_by(_e.c.account_id)
        .subquery("per_account")
    )
    unrolled = (
        select(_d.c.account_id.label("account_id"), func.sum(_d.c.delta_cents).label("pending"))
        .group_by(_d.c.account_id)
        .subquery("unrolled")
    )
    net = func.coalesce(per_account.c.net, 0)
    computed = case((_a.c.normal_side == DEBIT, net), else_=-net)
    balance = _a.c.balance_cents + func.coalesce(unrolled.c.pending, 0)
    expected_side = case(*[(_a.c.kind == k.value, k.normal_side.value) for k in AccountKind], else_=None)
    may_not_go_negative = or_(_a.c.no_overdraft.is_(True), _a.c.kind.in_(NO_OVERDRAFT_KINDS))
    misconfigured = or_(
        expected_side.is_(None),
        _a.c.normal_side != expected_side,
        and_(_a.c.kind == AccountKind.USER_WALLET.value, _a.c.user_id.is_(None)),
        and_(_a.c.kind != AccountKind.USER_WALLET.value, _a.c.user_id.is_not(None)),
    )
    statement = (
        select(
            _a.c.id,
            _a.c.code,
            _a.c.kind,
            _a.c.currency,
            _a.c.normal_side,
            _a.c.user_id,
            balance.label("balance"),
            computed.label("computed"),
            may_not_go_negative.label("guarded"),
            expected_side.label("expected_side"),
        )
        .select_from(
            _a.outerjoin(per_account, per_account.c.account_id == _a.c.id).outerjoin(
                unrolled, unrolled.c.account_id == _a.c.id
            )
        )
        .where(
            or_(
                balance != computed,
                and_(may_not_go_negative, or_(balance < 0, computed < 0)),
                misconfigured,
            )
        )
        .order_by(_a.c.id)
    )
    for row in await out.rows(connection, statement, "accounts"):
        stored, recomputed = as_int(row.balance), as_int(row.computed)
        if row.expected_side is None or row.normal_side != row.expected_side:
            out.violation(
                Code.ACCOUNT_MISCONFIGURED,
                f"account {row.code}: kind {row.kind} is {row.expected_side or 'not a known kind'}-normal, "
                f"the row says {row.normal_side}",
            )
        if (row.kind == AccountKind.USER_WALLET.value) != (row.user_id is not None):
            out.violation(
                Code.ACCOUNT_MISCONFIGURED,
                f"account {row.code}: a user wallet, and only a user wallet, belongs to a user",
            )
        if stored != recomputed:
            out.violation(
                Code.BALANCE_MISMATCH,
                f"account {row.code}: stored balance {money(stored, row.currency)}, its entries on the "
                f"{row.normal_side} side make {money(recomputed, row.currency)}",
            )
        if row.guarded and (stored < 0 or recomputed < 0):
            out.violation(
                Code.NEGATIVE_BALANCE,
                f"account {row.code} may not be overdrawn and is at "
                f"{money(min(stored, recomputed), row.currency)}",
            )

    await _check_unrolled(connection, out)

    by_kind = await connection.execute(
        select(_a.c.kind, _a.c.currency, func.sum(balance))
        .select_from(_a.outerjoin(unrolled, unrolled.c.account_id == _a.c.id))
        .group_by(_a.c.kind, _a.c.currency)
    )
    for kind, currency, total in by_kind:
        out.report.balances_by_kind[f"{kind} {currency}"] = as_int(total)


async def _check_unrolled(connection: AsyncConnection, out: Collector) -> None:
    """Each change waiting for the roll-up is exactly its posting's entries on its account."""
    pending = _d.alias("pending")  # only the entries of postings with a change pending are summed
    per_posting = (
        select(
            _e.c.posting_id.label("posting_id"),
            _e.c.account_id.label("account_id"),
            func.sum(signed()).label("net"),
        )
        .select_from(
            _e.join(
                pending,
                and_(pending.c.posting_id == _e.c.posting_id, pending.c.account_id == _e.c.account_id),
            )
        )
        .group_by(_e.c.posting_id, _e.c.account_id)
        .subquery("per_posting")
    )
    net = func.coalesce(per_posting.c.net, 0)
    made = case((_a.c.normal_side == DEBIT, net), else_=-net)
    statement = (
        select(
            _d.c.id,
            _d.c.posting_id,
            _d.c.delta_cents,
            _a.c.code,
            _a.c.kind,
            _a.c.currency,
            _p.c.id.label("p"),
        )
        .select_from(
            _d.outerjoin(_a, _a.c.id == _d.c.account_id)
            .outerjoin(_p, _p.c.id == _d.c.posting_id)
            .outerjoin(
                per_posting,
                and_(
                    per_posting.c.posting_id == _d.c.posting_id, per_posting.c.account_id == _d.c.account_id
                ),
            )
        )
        .where(
            or_(
                _a.c.id.is_(None),
                _p.c.id.is_(None),
                _a.c.kind == AccountKind.USER_WALLET.value,
                _d.c.delta_cents != made,
            )
        )
        .order_by(_d.c.id)
    )
    for row in await out.rows(connection, statement, "unrolled"):
        if row.code is None or row.p is None:
            what = "an unknown account" if row.code is None else "an unknown posting"
            out.violation(Code.UNROLLED_MISMATCH, f"pending change {row.id} names {what}")
        elif row.kind == AccountKind.USER_WALLET.value:
            out.violation(
                Code.UNROLLED_MISMATCH,
                f"pending change {row.id} of posting {row.posting_id} is for user wallet {row.code}",
            )
        else:
            out.violation(
                Code.UNROLLED_MISMATCH,
                f"pending change {row.id} of posting {row.posting_id} on {row.code} says "
                f"{money(as_int(row.delta_cents), row.currency)}, its entries make another amount",
            )

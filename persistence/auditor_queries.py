"""The continuous auditor's reads: each answers one invariant with an aggregate query that returns only
what breaks it (persistence/consistency/ is the full, one-shot checker; this is the cheap, repeated
one). Sign convention as there: a net is sum(DEBIT) - sum(CREDIT) in minor units of one currency."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from domain.payments.status import TERMINAL_STATUSES
from domain.wallet.account_kind import AccountKind, LedgerSide
from persistence import ledger_balances
from persistence.tables import (
    audit_logs,
    audit_pending,
    ledger_accounts,
    ledger_balance_deltas,
    ledger_entries,
    transactions,
)

_a, _d, _e, _t = ledger_accounts, ledger_balance_deltas, ledger_entries, transactions
_NO_OVERDRAFT_KINDS = [k.value for k in AccountKind if k.default_no_overdraft]
_DEBIT = LedgerSide.DEBIT.value
_TERMINAL = [s.value for s in TERMINAL_STATUSES]
# Records of the M-Pesa adapter's Account Balance answers (mpesa_adapter/callback_store.py).
BALANCE_ANSWERED = "mpesa.balance_query.answered"
BALANCE_SUBJECT = "MpesaBalanceQuery"


def _net() -> ColumnElement[Any]:
    return func.coalesce(
        func.sum(case((_e.c.side == _DEBIT, _e.c.amount_cents), else_=-_e.c.amount_cents)), 0
    )


async def ledger_sums(connection: AsyncConnection) -> dict[str, int]:
    """Debits - credits per currency, over every entry (0 everywhere in a sound ledger)."""
    rows = await connection.execute(select(_e.c.amount_currency, _net()).group_by(_e.c.amount_currency))
    return {str(currency): int(net) for currency, net in rows}


@dataclass(frozen=True, slots=True)
class AccountProblem:
    code: str
    kind: str
    currency: str
    stored_cents: int
    computed_cents: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "account": self.code,
            "kind": self.kind,
            "currency": self.currency,
            "stored_cents": self.stored_cents,
            "computed_cents": self.computed_cents,
        }


async def overdrawn_accounts(connection: AsyncConnection, *, limit: int = 100) -> list[AccountProblem]:
    """Accounts that may not be overdrawn (their flag, or a kind whose default says so) below zero."""
    balance = ledger_balances.balance()
    rows = await connection.execute(
        select(_a.c.code, _a.c.kind, _a.c.currency, balance.label("balance"))
        .where(
            or_(_a.c.no_overdraft.is_(True), _a.c.kind.in_(_NO_OVERDRAFT_KINDS)),
            balance < 0,
        )
        .order_by(_a.c.code)
        .limit(limit)
    )
    return [AccountProblem(r.code, r.kind, r.currency, int(r.balance)) for r in rows]


async def touched_since(
    connection: AsyncConnection, since: datetime | None
) -> tuple[list[uuid.UUID], datetime | None]:
    """Accounts with an entry created after `since` (every account when None: a full pass also
    sees a balance set on an account that has no entry at all), and the newest entry's created_at."""
    where = [] if since is None else [_e.c.created_at > since]
    newest = (await connection.execute(select(func.max(_e.c.created_at)).where(*where))).scalar()
    accounts = select(_a.c.id) if since is None else select(_e.c.account_id).where(*where).distinct()
    ids = (await connection.execute(accounts)).scalars().all()
    return list(ids), newest


async def balance_mismatches(
    connection: AsyncConnection, account_ids: list[uuid.UUID], *, chunk: int = 500
) -> list[AccountProblem]:
    """Of these accounts, those whose stored balance (balance_cents and the changes not yet rolled
    up) is not what their entries add up to (on the account's normal side)."""
    found: list[AccountProblem] = []
    unrolled = (
        select(_d.c.account_id.label("account_id"), func.sum(_d.c.delta_cents).label("pending"))
        .group_by(_d.c.account_id)
        .subquery("unrolled")
    )
    stored = _a.c.balance_cents + func.coalesce(unrolled.c.pending, 0)
    normal_net = case(
        (_a.c.normal_side == _DEBIT, func.coalesce(func.sum(_signed()), 0)),
        else_=-func.coalesce(func.sum(_signed()), 0),
    )
    for start in range(0, len(account_ids), chunk):
        part = account_ids[start : start + chunk]
        rows = await connection.execute(
            select(_a.c.code, _a.c.kind, _a.c.currency, stored.label("stored"), normal_net.label("computed"))
            .select_from(
                _a.outerjoin(_e, _e.c.account_id == _a.c.id).outerjoin(
                    unrolled, unrolled.c.account_id == _a.c.id
                )
            )
            .where(_a.c.id.in_(part))
            .group_by(
                _a.c.id,
                _a.c.code,
                _a.c.kind,
                _a.c.currency,
                _a.c.balance_cents,
                _a.c.normal_side,
                unrolled.c.pending,
            )
        )
        for r in rows:
            if int(r.stored) != int(r.computed):
                found.append(AccountProblem(r.code, r.kind, r.currency, int(r.stored), int(r.computed)))
    return sorted(found, key=lambda p: p.code)


def _signed() -> ColumnElement[Any]:
    return case((_e.c.side == _DEBIT, _e.c.amount_cents), else_=-_e.c.amount_cents)


async def past_time_limit(connection: AsyncConnection, before: datetime) -> dict[tuple[str, str], int]:
    """Non-terminal transactions whose status has not changed since `before`, by (type, status)."""
    rows = await connection.execute(
        select(_t.c.type, _t.c.status, func.count())
        .where(_t.c.status.not_in(_TERMINAL), _t.c.updated_at < before)
        .group_by(_t.c.type, _t.c.status)
    )
    return {(str(type_), str(status)): int(n) for type_, status, n in rows}


async def float_balance(
    connection: AsyncConnection, kind: AccountKind, currency: str, *, at: datetime | None = None
) -> int:
    """The float's balance (debit-normal) now, or as its entries stood at `at`."""
    if at is None:
        float_rows = (_a.c.kind == kind.value, _a.c.currency == currency)
        stored = await connection.execute(
            select(
                func.coalesce(func.sum(_a.c.balance_cents), 0) + ledger_balances.unrolled_total(*float_rows)
            ).where(*float_rows)
        )
        return int(stored.scalar_one())
    net = await connection.execute(
        select(func.coalesce(func.sum(_signed()), 0))
        .select_from(_e.join(_a, _a.c.id == _e.c.account_id))
        .where(and_(_a.c.kind == kind.value, _a.c.currency == currency, _e.c.created_at <= at))
    )
    return int(net.scalar_one())


@dataclass(frozen=True, slots=True)
class BalanceAnswer:
    """An Account Balance result the M-Pesa adapter took (it answered a query of ours), with the
    shortcode that query asked about (None: recorded before queries named their shortcode)."""

    answered_at: datetime
    conversation_id: str
    result_code: str | None
    account_balance: str | None
    shortcode: str | None = None


# Answers read to find each shortcode's latest: the auditor asks every shortcode each run, so a few
# runs' worth holds them all.
_RECENT_ANSWERS = 50


async def recent_mpesa_balances(connection: AsyncConnection) -> list[BalanceAnswer]:
    """The latest Account Balance answers, newest first."""
    found: list[BalanceAnswer] = []
    for table in (audit_logs, audit_pending):
        rows = await connection.execute(
            select(table.c.occurred_at, table.c.subject_id, table.c.details)
            .where(table.c.action == BALANCE_ANSWERED, table.c.subject_type == BALANCE_SUBJECT)
            .order_by(table.c.occurred_at.desc(), table.c.id.desc())
            .limit(_RECENT_ANSWERS)
        )
        for row in rows:
            details = json.loads(row.details)
            code, balance, shortcode = (
                details.get(k) for k in ("result_code", "account_balance", "shortcode")
            )
            found.append(
                BalanceAnswer(
                    row.occurred_at,
                    str(row.subject_id),
                    None if code is None else str(code),
                    None if balance is None else str(balance),
                    None if shortcode is None else str(shortcode),
                )
            )
    return sorted(found, key=lambda a: a.answered_at, reverse=True)


async def latest_mpesa_balance(connection: AsyncConnection) -> BalanceAnswer | None:
    recent = await recent_mpesa_balances(connection)
    return recent[0] if recent else None


async def latest_mpesa_balances(connection: AsyncConnection) -> dict[str | None, BalanceAnswer]:
    """The latest answer about each shortcode."""
    latest: dict[str | None, BalanceAnswer] = {}
    for answer in await recent_mpesa_balances(connection):
        latest.setdefault(answer.shortcode, answer)
    return latest

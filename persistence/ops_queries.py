"""Read-only figures for operators (OpsService): ledger and transactions side by side, and the
state of the outbox. Aggregate queries only; one short connection per report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.payments.status import TERMINAL_STATUSES, TransactionStatus
from domain.wallet.account_kind import LedgerSide
from persistence import ledger_balances
from persistence.tables import (
    domain_events,
    ledger_accounts,
    ledger_entries,
    mpesa_callback_reviews,
    transactions,
)

ATTENTION_STATUSES = (TransactionStatus.OUTCOME_UNKNOWN.value, TransactionStatus.NEEDS_REVIEW.value)


@dataclass(frozen=True, slots=True)
class KindTotal:
    kind: str
    currency: str
    balance_cents: int
    account_count: int


@dataclass(frozen=True, slots=True)
class CurrencyTotal:
    currency: str
    debits_cents: int
    credits_cents: int

    @property
    def balanced(self) -> bool:
        return self.debits_cents == self.credits_cents


@dataclass(frozen=True, slots=True)
class StatusCount:
    type: str
    status: str
    currency: str
    count: int
    amount_cents: int
    oldest_created_at: datetime | None = None  # of the transactions in this type and status


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    kinds: list[KindTotal]
    currencies: list[CurrencyTotal]
    statuses: list[StatusCount]
    needing_attention: int
    open_callback_reviews: int
    # Completions per hour, oldest first: the hour ending at `now` is the last (empty without `now`).
    completed_by_hour: list[tuple[datetime, int]] = field(default_factory=list)
    # Transactions in flight at some point of each of those hours (same hours, same order).
    in_flight_by_hour: list[tuple[datetime, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    published: int
    pending_with_failed_attempts: int
    max_publish_attempts: int
    oldest_pending_occurred_at: datetime | None
    pending_by_stream: dict[str, int] = field(default_factory=dict)


def as_utc(moment: datetime | None) -> datetime | None:
    # Stored values are UTC (persistence.types.UtcDateTime); an aggregate comes back naive.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def hourly(moments: list[datetime], now: datetime, hours: int) -> list[tuple[datetime, int]]:
    """(start of each hour, how many moments fall in it), for the `hours` hours ending at `now`."""
    counts = [0] * hours
    for moment in moments:
        back = int((now - moment) / timedelta(hours=1))
        if 0 <= back < hours and moment <= now:
            counts[hours - 1 - back] += 1
    return [(now - timedelta(hours=hours - i), counts[i]) for i in range(hours)]


def in_flight_hourly(
    spans: list[tuple[datetime, datetime | None]], now: datetime, hours: int
) -> list[tuple[datetime, int]]:
    """(start of each hour, how many transactions were in flight during it), for the `hours` hours
    ending at `now`. A span is (created_at, when it became final, or None while it is not): it was in
    flight during an hour if it was created before the hour ended and was not yet final when it began.
    """
    starts = [now - timedelta(hours=hours - i) for i in range(hours)]
    return [
        (start, sum(1 for created, final in spans if created < end and (final is None or final > start)))
        for start in starts
        for end in [start + timedelta(hours=1)]
    ]


async def reconciliation_report(
    engine: AsyncEngine, *, now: datetime | None = None, hours: int = 24
) -> ReconciliationReport:
    a, e, t = ledger_accounts, ledger_entries, transactions
    debit = LedgerSide.DEBIT.value
    async with engine.connect() as connection:
        kinds = (
            await connection.execute(
                select(a.c.kind, a.c.currency, func.sum(ledger_balances.balance(a)), func.count())
                .group_by(a.c.kind, a.c.currency)
                .order_by(a.c.kind, a.c.currency)
            )
        ).all()
        currencies = (
            await connection.execute(
                select(
                    e.c.amount_currency,
                    func.coalesce(func.sum(case((e.c.side == debit, e.c.amount_cents), else_=0)), 0),
                    func.coalesce(func.sum(case((e.c.side != debit, e.c.amount_cents), else_=0)), 0),
                )
                .group_by(e.c.amount_currency)
                .order_by(e.c.amount_currency)
            )
        ).all()
        statuses = (
            await connection.execute(
                select(
                    t.c.type,
                    t.c.status,
                    t.c.amount_currency,
                    func.count(),
                    func.sum(t.c.amount_cents),
                    func.min(t.c.created_at),
                )
                .group_by(t.c.type, t.c.status, t.c.amount_currency)
                .order_by(t.c.type, t.c.status, t.c.amount_currency)
            )
        ).all()
        attention = (
            await connection.execute(
                select(func.count()).select_from(t).where(t.c.status.in_(ATTENTION_STATUSES))
            )
        ).scalar_one()
        completed: list[datetime] = []
        spans: list[tuple[datetime, datetime | None]] = []
        if now is not None:
            # What is still in flight, and whatever became final within the window: a final
            # status is not left again (status.py), so its updated_at is when it became final.
            since = now - timedelta(hours=hours)
            final = [s.value for s in TERMINAL_STATUSES]
            open_ = [s.value for s in TransactionStatus if s not in TERMINAL_STATUSES]
            # Two ranges of the (status, updated_at) index rather than one OR over the table.
            columns = (t.c.status, t.c.created_at, t.c.updated_at)
            rows = await connection.execute(
                union_all(
                    select(*columns).where(t.c.status.in_(open_), t.c.created_at < now),
                    select(*columns).where(
                        t.c.status.in_(final), t.c.updated_at > since, t.c.created_at < now
                    ),
                )
            )
            for r in rows:
                created, updated = as_utc(r.created_at), as_utc(r.updated_at)
                if created is None or updated is None:
                    continue
                done = r.status in final
                spans.append((created, updated if done else None))
                if r.status == TransactionStatus.COMPLETED.value and updated > since:
                    completed.append(updated)
        reviews = (
            await connection.execute(
                select(func.count())
                .select_from(mpesa_callback_reviews)
                .where(mpesa_callback_reviews.c.resolved_at.is_(None))
            )
        ).scalar_one()
    return ReconciliationReport(
        kinds=[KindTotal(k, c, int(b or 0), int(n)) for k, c, b, n in kinds],
        currencies=[CurrencyTotal(c, int(d), int(cr)) for c, d, cr in currencies],
        statuses=[
            StatusCount(ty, st, cur, int(n), int(s or 0), as_utc(oldest))
            for ty, st, cur, n, s, oldest in statuses
        ],
        needing_attention=int(attention),
        open_callback_reviews=int(reviews),
        completed_by_hour=hourly(completed, now, hours) if now is not None else [],
        in_flight_by_hour=in_flight_hourly(spans, now, hours) if now is not None else [],
    )


async def outbox_stats(engine: AsyncEngine) -> OutboxStats:
    d = domain_events
    pending = d.c.published_at.is_(None)
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(
                    func.coalesce(func.sum(case((pending, 1), else_=0)), 0),
                    func.coalesce(func.sum(case((pending, 0), else_=1)), 0),
                    func.coalesce(func.sum(case((pending & (d.c.publish_attempts > 0), 1), else_=0)), 0),
                    func.coalesce(func.max(d.c.publish_attempts), 0),
                )
            )
        ).one()
        oldest = (await connection.execute(select(func.min(d.c.occurred_at)).where(pending))).scalar_one()
        by_stream = (
            await connection.execute(select(d.c.stream, func.count()).where(pending).group_by(d.c.stream))
        ).all()
    if oldest is not None and oldest.tzinfo is None:
        # Stored values are UTC (persistence.types.UtcDateTime).
        oldest = oldest.replace(tzinfo=UTC)
    return OutboxStats(
        pending=int(row[0]),
        published=int(row[1]),
        pending_with_failed_attempts=int(row[2]),
        max_publish_attempts=int(row[3]),
        oldest_pending_occurred_at=oldest,
        pending_by_stream={str(s): int(n) for s, n in by_stream},
    )

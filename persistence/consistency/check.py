"""`check_consistency`: every check of this package over one connection (on MariaDB one
REPEATABLE READ snapshot), in order, into one report."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from persistence.consistency.accounts import check_accounts
from persistence.consistency.books import SimulatorBooks
from persistence.consistency.collector import Collector
from persistence.consistency.deriv_books import check_deriv_books
from persistence.consistency.evidence import check_evidence
from persistence.consistency.flows import check_flows
from persistence.consistency.funding import check_funding
from persistence.consistency.ledger import check_postings, check_sums
from persistence.consistency.mpesa_books import check_mpesa_books
from persistence.consistency.overview import list_transactions
from persistence.consistency.report import DEFAULT_MAX_ROWS, DEFAULT_STALE_AFTER, ConsistencyReport


async def check_consistency(
    engine: AsyncEngine,
    *,
    now: datetime,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    books: SimulatorBooks | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> ConsistencyReport:
    """Check the ledger, the transactions and their evidence (and, given, the simulators'
    books). `now` must be timezone-aware; `max_rows` caps the rows listed per rule."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    report = ConsistencyReport(checked_at=now, stale_after=stale_after)
    out = Collector(report, max_rows)
    async with engine.connect() as connection:
        await check_sums(connection, out)
        await check_postings(connection, out)
        await check_accounts(connection, out)
        await check_funding(connection, out)
        await list_transactions(connection, out, now=now, stale_after=stale_after)
        await check_evidence(connection, out)
        await check_flows(connection, out)
        if books is not None and books.deriv is not None:
            await check_deriv_books(connection, out, books.deriv)
            report.books_checked.append("deriv")
        if books is not None and books.mpesa is not None:
            await check_mpesa_books(connection, out, books.mpesa)
            report.books_checked.append("mpesa")
        await connection.rollback()
    return report

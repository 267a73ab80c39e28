"""`penpay check`'s wiring: the consistency checker on its own engine, against the books given."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from persistence.consistency.books import SimulatorBooks
    from persistence.consistency.report import ConsistencyReport


async def schema_problem(url: str) -> str | None:
    """Why the database at `url` is not at Alembic's head, or None."""
    from persistence.migrate import schema_problem as problem

    return await problem(url)


async def check_database(
    url: str, *, now: datetime, stale_after: timedelta, books: SimulatorBooks | None, max_rows: int
) -> ConsistencyReport:
    """One consistency check over a one-connection engine, disposed afterwards."""
    from persistence.consistency.check import check_consistency
    from persistence.engine import create_engine

    engine = create_engine(url, pool_size=1)
    try:
        return await check_consistency(
            engine, now=now, stale_after=stale_after, books=books, max_rows=max_rows
        )
    finally:
        await engine.dispose()

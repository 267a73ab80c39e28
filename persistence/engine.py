"""Engine creation with the per-dialect settings PenPay relies on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(url: str, *, pool_size: int = 20, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo)
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=3600,
        # No ROLLBACK on every return to the pool: a connection closed inside a transaction is
        # rolled back by SQLAlchemy itself, and one returned after COMMIT has nothing open. The
        # reset was one round trip more per unit of work (bench/README.md).
        pool_reset_on_return=None,
        # REPEATABLE READ is InnoDB's default; stated so the locking design does not depend
        # on a server setting. Locking reads (FOR UPDATE) read the latest committed row.
        isolation_level="REPEATABLE READ",
    )


def _sqlite_engine(url: str, *, echo: bool) -> AsyncEngine:
    engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})

    # Let SQLAlchemy issue BEGIN itself, and make it BEGIN IMMEDIATE: SQLite has no row
    # locks, so a writer takes the database write lock up front instead of failing to
    # upgrade a read lock later (SQLite's equivalent of SELECT ... FOR UPDATE).
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine

"""Engine creation with the per-dialect settings PenPay relies on."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from persistence import driver_metadata

log = structlog.get_logger("penpay.db")

# Server-side prepared statements asyncmy keeps per connection (its LRU cache): a statement met
# again is executed in the binary protocol, its values sent as they are and its rows read without
# parsing text, and a multi-row INSERT goes as one COM_STMT_BULK_EXECUTE on MariaDB: about 10%
# fewer instructions per deposit in PenPay's processes (bench/README.md). The server holds at most
# max_prepared_stmt_count of them across all connections: past it a statement is sent as text.
# `?stmt_cache_size=N` in the database URL sets it (0: every statement as text).
STATEMENT_CACHE = 100


def create_engine(url: str, *, pool_size: int = 20, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo)
    if parsed.get_driver_name() == "aiomysql":
        driver_metadata.install()  # each column's metadata parsed once per process, not per result
    engine = create_async_engine(
        url,
        echo=echo,
        # Up to twice `pool_size` connections, all kept once opened: an overflow connection is
        # closed on its return, so a burst beyond pool_size paid a connect, its handshake and three
        # SETs per unit of work (0.75 new connections per deposit in the e2e bench).
        pool_size=2 * pool_size,
        max_overflow=0,
        # No ping per checkout (a round trip per unit of work): a pooled connection found dead by
        # its first statement is replaced and that statement sent again (RetryingConnection).
        pool_pre_ping=False,
        pool_recycle=3600,
        # No ROLLBACK on every return to the pool: a connection closed inside a transaction is
        # rolled back by SQLAlchemy itself, and one returned after COMMIT has nothing open. The
        # reset was one round trip more per unit of work (bench/README.md).
        pool_reset_on_return=None,
        # REPEATABLE READ is InnoDB's default; stated so the locking design does not depend
        # on a server setting. Locking reads (FOR UPDATE) read the latest committed row.
        isolation_level="REPEATABLE READ",
        connect_args=_driver_args(parsed),
    )
    return engine


def _driver_args(url: URL) -> dict[str, Any]:
    if url.get_driver_name() == "asyncmy" and "stmt_cache_size" not in url.query:
        return {"stmt_cache_size": STATEMENT_CACHE}
    return {}  # the URL's own query, which SQLAlchemy hands to the driver


class RetryingConnection(AsyncConnection):
    """A connection whose first statement is sent once more, on a new connection, when the pooled
    one turns out dead (the server restarted, KILL, wait_timeout): no ping per checkout (a round trip
    per unit of work), and no look at the driver's private socket either.

    Safe because it is the first statement: nothing of this transaction can have been done by the
    server (autocommit is off, and a connection lost mid-statement rolls its transaction back), so
    sending it again on a fresh connection is the whole transaction from its start. SQLAlchemy
    invalidates the connection (and every pooled one older than the failure) before we retry.
    A failure after the first statement is the caller's, as before.
    """

    _sent_one = False

    async def execute(self, statement: Any, parameters: Any = None, *, execution_options: Any = None) -> Any:
        if self._sent_one:
            return await super().execute(statement, parameters, execution_options=execution_options)
        self._sent_one = True
        try:
            return await super().execute(statement, parameters, execution_options=execution_options)
        except exc.DBAPIError as error:
            if not error.connection_invalidated:
                raise
            log.warning("db.dead_connection_replaced", error_type=type(error.orig).__name__)
        # The invalidated transaction is ended, then the next statement checks out a new connection
        # and begins anew (the caller commits that one).
        await self.rollback()
        return await super().execute(statement, parameters, execution_options=execution_options)


def connect(engine: AsyncEngine) -> RetryingConnection:
    """`engine.connect()`, with the first statement retried on a dead pooled connection."""
    return RetryingConnection(engine)


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

"""Engine creation with the per-dialect settings PenPay relies on."""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def create_engine(url: str, *, pool_size: int = 20, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo)
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping per checkout (a round trip per unit of work): `_drop_dead` below looks at the
        # socket instead, and a connection found dead is replaced before it is handed out.
        pool_pre_ping=False,
        pool_recycle=3600,
        # No ROLLBACK on every return to the pool: a connection closed inside a transaction is
        # rolled back by SQLAlchemy itself, and one returned after COMMIT has nothing open. The
        # reset was one round trip more per unit of work (bench/README.md).
        pool_reset_on_return=None,
        # REPEATABLE READ is InnoDB's default; stated so the locking design does not depend
        # on a server setting. Locking reads (FOR UPDATE) read the latest committed row.
        isolation_level="REPEATABLE READ",
    )
    event.listen(engine.sync_engine.pool, "checkout", _drop_dead)
    return engine


def _drop_dead(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection the server has closed (restart, KILL, wait_timeout): the pool
    then discards it and checks out another (a new connection if need be), so the caller never sees
    it. An idle connection has nothing to read: a readable socket, data buffered or end of file
    means the server hung up (or wrote an error before doing so). No round trip, unlike a ping. A
    connection lost silently (no FIN) fails its first statement as before; SQLAlchemy then
    invalidates the whole pool, so one caller sees it, not one per pooled connection."""
    if _looks_dead(getattr(dbapi_connection, "_connection", None)):
        raise exc.DisconnectionError("the server closed this pooled connection")


def _looks_dead(raw: Any) -> bool:
    writer = getattr(raw, "_writer", None)  # aiomysql's asyncio stream pair
    reader = getattr(raw, "_reader", None)
    if writer is None or reader is None:
        return raw is not None and hasattr(raw, "_writer")  # aiomysql, closed; other drivers: trust
    transport = writer.transport
    if transport is None or transport.is_closing() or reader.at_eof() or getattr(reader, "_buffer", b""):
        return True
    sock = transport.get_extra_info("socket")
    fileno = sock.fileno() if sock is not None else -1
    if fileno < 0:
        return True
    poller = select.poll()  # not select(): descriptors above 1024 are common in a busy process
    poller.register(fileno, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


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

"""An audit record waiting in audit_pending cannot be changed, nor deleted before it is sealed
(migration 0008's triggers), on MariaDB and SQLite; the sealer's own delete passes, each chain
row names the pending record it came from, and rows sealed before the guard keep verifying."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Row, delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence import migrate
from persistence.audit import AuditRecord, ChainReport, verify_chain, write_pending
from persistence.audit_sealer import AuditSealer
from persistence.engine import create_engine
from persistence.tables import audit_logs, audit_pending

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def record(subject_id: str) -> AuditRecord:
    return AuditRecord(
        occurred_at=datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        actor="teller",
        action="Deposit",
        subject_type="Transaction",
        subject_id=subject_id,
        details={"amount": 500},
    )


async def commit_pending(engine: AsyncEngine, *records: AuditRecord) -> list[int]:
    """Step 1 of an audited action: the records committed to audit_pending, not sealed."""
    async with engine.begin() as connection:
        await write_pending(connection, records)
        ids = select(audit_pending.c.id).order_by(audit_pending.c.id.desc()).limit(len(records))
        return sorted((await connection.execute(ids)).scalars())


async def seal(engine: AsyncEngine) -> int:
    return await AuditSealer(engine).seal_all()


async def pending_ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as connection:
        ids = select(audit_pending.c.id).order_by(audit_pending.c.id)
        return list((await connection.execute(ids)).scalars())


async def chain_rows(engine: AsyncEngine) -> Sequence[Row[Any]]:
    async with engine.connect() as connection:
        return (await connection.execute(select(audit_logs).order_by(audit_logs.c.id))).all()


async def verify(engine: AsyncEngine) -> ChainReport:
    async with engine.connect() as connection:
        return await verify_chain(connection)


async def test_a_pending_record_cannot_be_changed_and_seals_as_written(engine: AsyncEngine) -> None:
    [pending_id] = await commit_pending(engine, record("tx-1"))

    with pytest.raises(DBAPIError, match="audit_pending is append-only"):
        async with engine.begin() as connection:
            await connection.execute(
                update(audit_pending).where(audit_pending.c.id == pending_id).values(details='{"amount":1}')
            )

    assert await seal(engine) == 1
    [sealed] = await chain_rows(engine)
    assert (sealed.subject_id, sealed.details, sealed.pending_id) == ("tx-1", '{"amount":500}', pending_id)
    assert (await verify(engine)).ok


async def test_a_pending_record_cannot_be_deleted_until_sealed(engine: AsyncEngine) -> None:
    ids = await commit_pending(engine, record("tx-1"), record("tx-2"), record("tx-3"))

    for statement in (delete(audit_pending).where(audit_pending.c.id == ids[1]), delete(audit_pending)):
        with pytest.raises(DBAPIError, match="not sealed yet"):
            async with engine.begin() as connection:
                await connection.execute(statement)
    assert await pending_ids(engine) == ids

    assert await seal(engine) == 3  # the sealer's own delete passes the guard
    assert await pending_ids(engine) == []
    rows = await chain_rows(engine)
    assert [(row.subject_id, row.pending_id) for row in rows] == list(
        zip(["tx-1", "tx-2", "tx-3"], ids, strict=True)
    )
    report = await verify(engine)
    assert report.ok and report.rows_checked == 3, report.problems


async def test_a_chain_row_naming_a_record_without_holding_it_does_not_unlock_its_delete(
    engine: AsyncEngine,
) -> None:
    [pending_id] = await commit_pending(engine, record("tx-1"))
    async with engine.begin() as connection:  # someone appends a harmless row that names the record
        await connection.execute(
            audit_logs.insert().values(
                occurred_at=datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
                actor="teller",
                action="Deposit",
                subject_type="Transaction",
                subject_id="TX-1",  # not the record's subject, if only by case
                details='{"amount":500}',
                pending_id=pending_id,
            )
        )

    with pytest.raises(DBAPIError, match="not sealed yet"):
        async with engine.begin() as connection:
            await connection.execute(delete(audit_pending).where(audit_pending.c.id == pending_id))
    assert await pending_ids(engine) == [pending_id]


async def test_records_committed_after_the_table_emptied_get_new_ids(engine: AsyncEngine) -> None:
    # SQLite reuses a plain rowid once the table is empty: a repeated pending id would clash with
    # the sealed row that names it and slip past the delete guard.
    [first] = await commit_pending(engine, record("tx-1"))
    await seal(engine)
    [second] = await commit_pending(engine, record("tx-2"))

    assert second > first
    with pytest.raises(DBAPIError, match="not sealed yet"):
        async with engine.begin() as connection:
            await connection.execute(delete(audit_pending))
    assert await seal(engine) == 1
    assert [row.pending_id for row in await chain_rows(engine)] == [first, second]
    assert (await verify(engine)).ok


async def test_rows_sealed_before_the_guard_keep_verifying_across_downgrade_and_upgrade(
    database_url: str, engine: AsyncEngine
) -> None:
    await commit_pending(engine, record("old-1"), record("old-2"))
    # 0006's downgrade seals what is pending the old way, into chain rows without a pending_id.
    await migrate.downgrade_async(database_url, "0005")
    await migrate.upgrade_async(database_url, "0007")
    with pytest.raises(DBAPIError, match="audit_logs is append-only"):  # 0008's downgrade kept them
        async with engine.begin() as connection:
            await connection.execute(delete(audit_logs))
    await migrate.upgrade_async(database_url)
    await engine.dispose()  # forget connections that saw the old schema

    [pending_id] = await commit_pending(engine, record("new-1"))
    await seal(engine)

    rows = await chain_rows(engine)
    assert [(row.subject_id, row.pending_id) for row in rows] == [
        ("old-1", None),
        ("old-2", None),
        ("new-1", pending_id),
    ]
    report = await verify(engine)
    assert report.ok and report.rows_checked == 3, report.problems

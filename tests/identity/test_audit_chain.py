"""The audit_logs hash chain (serialised under concurrency, verified, tamper found) and the
append-only triggers on audit_logs and ledger_entries, on MariaDB and SQLite."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence import migrate
from persistence.audit import AuditRecord, ChainReport, verify_chain
from persistence.engine import create_engine
from persistence.tables import audit_logs, ledger_entries
from persistence.unit_of_work import SqlUnitOfWork
from tests import databases

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["mariadb", "sqlite"])
def own_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("fresh_mariadb_url" if request.param == "mariadb" else "sqlite_url"))


@pytest.fixture
async def chain_engine(own_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(own_url, pool_size=10)
    yield engine
    await engine.dispose()


async def write(engine: AsyncEngine, n: int, tag: str) -> None:
    for i in range(n):
        async with SqlUnitOfWork(engine, actor=f"writer-{tag}") as uow:
            uow.audit(action="Test", subject_type="Test", subject_id=f"{tag}-{i}", details={"i": i})
            uow.audit(action="Test2", subject_type="Test", subject_id=f"{tag}-{i}")
            await uow.commit()


async def verify(engine: AsyncEngine) -> ChainReport:
    async with engine.connect() as connection:
        return await verify_chain(connection)


async def test_concurrent_writers_build_one_intact_chain(chain_engine: AsyncEngine) -> None:
    await asyncio.gather(*(write(chain_engine, 10, str(w)) for w in range(6)))
    report = await verify(chain_engine)
    assert report.ok, report.problems
    assert report.rows_checked == 120


async def _raw(engine: AsyncEngine, sql: str) -> None:
    """Tampering as a database administrator would: triggers dropped first."""
    async with engine.begin() as connection:
        for name in ("trg_audit_logs_no_update", "trg_audit_logs_no_delete"):
            await connection.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        await connection.execute(text(sql))


async def test_a_changed_removed_or_inserted_row_is_found(chain_engine: AsyncEngine) -> None:
    await write(chain_engine, 5, "a")
    assert (await verify(chain_engine)).ok
    async with chain_engine.connect() as connection:
        ids = (await connection.execute(select(audit_logs.c.id).order_by(audit_logs.c.id))).scalars().all()

    await _raw(chain_engine, f"UPDATE audit_logs SET details = '[99]' WHERE id = {ids[2]}")
    report = await verify(chain_engine)
    assert not report.ok and any(f"row {ids[2]}: content" in p for p in report.problems)

    await _raw(chain_engine, f"DELETE FROM audit_logs WHERE id = {ids[2]}")
    report = await verify(chain_engine)
    assert any(f"row {ids[3]}: chain broken" in p for p in report.problems)
    assert any("head counts" in p for p in report.problems)


async def test_an_inserted_row_and_a_cut_tail_are_found(chain_engine: AsyncEngine) -> None:
    await write(chain_engine, 3, "b")
    async with chain_engine.connect() as connection:
        rows = (await connection.execute(select(audit_logs).order_by(audit_logs.c.id))).all()
    # a forged row appended with a correct-looking hash: the head does not know it
    forged = AuditRecord(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "evil", "Forged", "X", "1", {}).row(
        rows[-1].row_hash
    )
    async with chain_engine.begin() as connection:
        await connection.execute(insert(audit_logs), forged)
    report = await verify(chain_engine)
    assert any("not the chain head" in p for p in report.problems)

    await _raw(chain_engine, f"DELETE FROM audit_logs WHERE id >= {rows[-1].id}")
    report = await verify(chain_engine)
    assert any("not the chain head" in p for p in report.problems)


async def test_penpay_audit_verify_command(own_url: str) -> None:
    engine = create_engine(own_url)
    try:
        await write(engine, 2, "c")
    finally:
        await engine.dispose()
    ok = subprocess.run(
        [sys.executable, "-m", "penpay.cli", "audit", "verify", "--database-url", own_url],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "audit chain intact: 4 rows checked" in ok.stdout
    engine = create_engine(own_url)
    try:
        await _raw(
            engine,
            "UPDATE audit_logs SET actor = 'someone-else' "
            "WHERE id = (SELECT id FROM (SELECT MIN(id) AS id FROM audit_logs) AS m)",
        )
    finally:
        await engine.dispose()
    broken = subprocess.run(
        [sys.executable, "-m", "penpay.cli", "audit", "verify", "--database-url", own_url],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert broken.returncode == 1 and "BROKEN" in broken.stdout


async def test_audit_logs_and_ledger_entries_refuse_update_and_delete(chain_engine: AsyncEngine) -> None:
    await write(chain_engine, 1, "d")
    for statement in (
        update(audit_logs).values(actor="x"),
        delete(audit_logs),
        update(ledger_entries).values(side="DEBIT"),
        delete(ledger_entries),
    ):
        if statement.table is ledger_entries:  # a ledger entry to refuse changes on
            await _one_ledger_entry(chain_engine)
        with pytest.raises(DBAPIError, match="append-only"):
            async with chain_engine.begin() as connection:
                await connection.execute(statement)


async def _one_ledger_entry(engine: AsyncEngine) -> None:
    from tests.integration.ledger_helpers import fund, wallet_and_float

    async with engine.connect() as connection:
        if (await connection.execute(select(ledger_entries.c.id))).first() is not None:
            return
    wallet, float_account = await wallet_and_float(engine)
    await fund(engine, wallet, float_account, 100)


async def test_downgrade_removes_the_triggers_and_upgrade_chains_existing_rows(tmp_path: Path) -> None:
    name, url = databases.create_mysql_database(migrated=False)
    try:
        await migrate.upgrade_async(url, "0003")
        engine = create_engine(url)
        async with engine.begin() as connection:  # rows written before the chain existed
            for i in range(3):
                await connection.execute(
                    insert(audit_logs),
                    {
                        "occurred_at": datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
                        "actor": "old",
                        "action": "Old",
                        "subject_type": "T",
                        "subject_id": str(i),
                        "details": "{}",
                        "prev_hash": None,
                        "row_hash": None,
                    },
                )
        await migrate.upgrade_async(url)
        assert (await verify(engine)).ok
        await write(engine, 1, "after")
        report = await verify(engine)
        assert report.ok and report.rows_checked == 5
        await migrate.downgrade_async(url, "0003")
        async with engine.begin() as connection:
            await connection.execute(update(audit_logs).values(actor="allowed again"))
        await engine.dispose()
    finally:
        databases.drop_mysql_database(name)

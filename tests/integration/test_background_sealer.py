"""The background audit sealer on MariaDB: with PENPAY_AUDIT_SEALER=background a unit of work only
commits its records (one INSERT into audit_pending) and never seals; the sealer of the audit daemon
chains every pending record, a killed writer's included, and alerts when its seals keep failing.
The tests call the sealer's pass directly: nothing waits on the wall clock."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.alerts import ALERTS_LOGGER
from persistence.audit import AuditRecord, verify_chain
from persistence.audit_sealer import seal_in_background, sealed_in_background
from persistence.engine import create_engine
from persistence.tables import audit_chain_head, audit_logs, audit_pending
from persistence.unit_of_work import SqlUnitOfWork
from workers.audit_sealing import BackgroundSealer

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(fresh_mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_mariadb_url, pool_size=10)
    seal_in_background(engine)
    yield engine
    await engine.dispose()


async def audited_commit(engine: AsyncEngine, tag: str, *, records: int = 2) -> None:
    # wait_for_seal (the default) changes nothing here: the background sealer owns the chain.
    async with SqlUnitOfWork(engine, actor=f"writer-{tag}") as uow:
        for n in range(records):
            uow.audit(action="Test", subject_type="Test", subject_id=f"{tag}-{n}")
        await uow.commit()


async def counts(engine: AsyncEngine) -> tuple[int, int]:
    """(records waiting in audit_pending, rows of the chain)"""
    async with engine.connect() as connection:
        pending = (await connection.execute(select(func.count()).select_from(audit_pending))).scalar_one()
        chained = (await connection.execute(select(func.count()).select_from(audit_logs))).scalar_one()
    return int(pending), int(chained)


async def test_units_of_work_only_commit_and_one_pass_chains_them_all(engine: AsyncEngine) -> None:
    assert sealed_in_background(engine)
    await asyncio.gather(*(audited_commit(engine, str(i)) for i in range(5)))
    assert await counts(engine) == (10, 0)  # committed with their actions, not sealed by them

    sealer = BackgroundSealer(engine)
    assert await sealer.seal_once() == 10
    assert await sealer.seal_once() == 0  # idle: nothing to chain

    async with engine.connect() as connection:
        report = await verify_chain(connection)
        head = (await connection.execute(select(audit_chain_head))).one()
        last = (await connection.execute(select(func.max(audit_logs.c.id)))).scalar_one()
    assert report.ok, report.problems
    assert (report.rows_checked, report.pending) == (10, 0)
    assert head.last_audit_id == last  # learnt from the insert, without a MAX over audit_logs


async def test_a_killed_writer_s_records_are_chained_by_the_next_pass(engine: AsyncEngine) -> None:
    # What a process killed right after its commit leaves: committed, unchained, never sealed by it.
    orphan = AuditRecord(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "crashed", "Orphan", "Test", "o-1", {})
    async with engine.begin() as connection:
        await connection.execute(insert(audit_pending), [orphan.pending_row()])
    await audited_commit(engine, "next", records=1)

    assert await BackgroundSealer(engine).seal_once() == 2
    async with engine.connect() as connection:
        report = await verify_chain(connection)
        actions = (await connection.execute(select(audit_logs.c.action).order_by(audit_logs.c.id))).scalars()
        assert list(actions) == ["Orphan", "Test"]
    assert report.ok and report.pending == 0


async def test_seals_failing_past_the_limit_raise_one_alert_and_lose_nothing(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import persistence.audit_sealer as sealer_module

    async def broken(*_: object, **__: object) -> int:
        raise ConnectionError("MariaDB went away mid-seal")

    ticks = iter([0.0, 30.0, 61.0, 90.0])
    sealer = BackgroundSealer(engine, alert_after=60.0, monotonic=lambda: next(ticks))
    await audited_commit(engine, "kept", records=1)
    with monkeypatch.context() as patch, caplog.at_level(logging.ERROR, logger=ALERTS_LOGGER):
        patch.setattr(sealer_module, "seal_pending", broken)  # fault injection: every seal fails
        for _ in range(4):
            assert await sealer.seal_once() == 0
    alerts = [getattr(r, "alert", None) for r in caplog.records if r.name == ALERTS_LOGGER]
    assert alerts == ["audit_seal_failing"]  # at 61 s, once
    assert await counts(engine) == (1, 0)

    assert await sealer.seal_once() == 1  # the database is back: the record is chained
    async with engine.connect() as connection:
        assert (await verify_chain(connection)).ok


async def test_the_loop_seals_what_was_committed_before_it_stops(engine: AsyncEngine) -> None:
    await audited_commit(engine, "last", records=3)
    stop = asyncio.Event()
    stop.set()  # stopped already: only the pass on the way out runs
    await BackgroundSealer(engine).run(stop)
    assert await counts(engine) == (0, 3)

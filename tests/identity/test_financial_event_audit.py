"""A financial event's audit record is written by the database from its outbox row (migration 0028),
on MariaDB and SQLite: one record per financial event, none for others, the content the application
wrote before, chained like any record; no financial event is written without an actor."""

from __future__ import annotations

import importlib.util
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from domain.shared.ids import LedgerAccountId, PostingId, UserId
from domain.user.events import PhoneVerified
from domain.wallet.events import BalanceChanged
from domain.wallet.money import Currency
from persistence import audit
from persistence.audit import verify_chain
from persistence.engine import create_engine
from persistence.tables import audit_logs, audit_pending, domain_events
from persistence.unit_of_work import SqlUnitOfWork

pytestmark = pytest.mark.integration

MIGRATION = Path(__file__).resolve().parents[2] / "migrations/versions/0028_audit_records_from_outbox.py"
AT = datetime(2026, 12, 7, 6, 0, 0, 123456, tzinfo=UTC)


def _balance_changed(balance: int) -> BalanceChanged:
    return BalanceChanged(
        account_id=LedgerAccountId.new(),
        currency=Currency.KES,
        balance_minor=balance,
        posting_id=PostingId.new(),
        version=3,
        occurred_at=AT,
    )


async def test_each_financial_event_gets_its_record_and_no_other_event_does(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        changed = [_balance_changed(100), _balance_changed(0)]
        async with SqlUnitOfWork(engine, actor="saga:test") as uow:
            uow.record_events([*changed, PhoneVerified(user_id=UserId.new(), version=2, occurred_at=AT)])
            uow.audit(action="Explicit", subject_type="Test", subject_id="x")
            await uow.commit()
        async with engine.connect() as connection:
            records = [
                *(await connection.execute(select(audit_logs).order_by(audit_logs.c.id))).all(),
                *(await connection.execute(select(audit_pending).order_by(audit_pending.c.id))).all(),
            ]
            report = await verify_chain(connection)
        assert report.ok, report.problems
        by_subject = {r.subject_id: r for r in records if r.action == "BalanceChanged"}
        assert sorted(r.action for r in records) == ["BalanceChanged", "BalanceChanged", "Explicit"]
        for event in changed:
            record = by_subject[event.aggregate_id()]
            assert (record.actor, record.subject_type) == ("saga:test", "LedgerAccount")
            assert record.occurred_at == AT
            assert json.loads(record.details) == {"event_id": str(event.event_id), **event.payload()}
    finally:
        await engine.dispose()


async def test_an_event_with_an_empty_payload_gets_valid_details(database_url: str) -> None:
    engine = create_engine(database_url)
    event_id = uuid.UUID("0193a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b")
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(domain_events), [_row(event_id, payload="{}", actor="ops:1")])
        async with engine.connect() as connection:
            details = (await connection.execute(select(audit_pending.c.details))).scalar_one()
        assert json.loads(details) == {"event_id": "0193a0b1-c2d3-7e4f-8a9b-0c1d2e3f4a5b"}
    finally:
        await engine.dispose()


async def test_a_financial_event_without_an_actor_is_refused(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with pytest.raises((IntegrityError, DBAPIError)):
            async with engine.begin() as connection:
                row = _row(uuid.uuid4(), payload="{}", actor=None)
                await connection.execute(insert(domain_events), [row])
        async with engine.connect() as connection:
            assert (await connection.execute(select(domain_events.c.id))).first() is None
    finally:
        await engine.dispose()


def test_the_trigger_names_every_financial_context_as_its_stream() -> None:
    spec = importlib.util.spec_from_file_location("migration_0028", MIGRATION)
    assert spec is not None and spec.loader is not None
    migration: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    streams = {f"'penpay.{context}'" for context in audit.FINANCIAL_CONTEXTS}
    for dialect in ("sqlite", "mysql"):
        sql = migration.trigger_sql(dialect)
        assert all(stream in sql for stream in streams), sql


def _row(event_id: uuid.UUID, *, payload: str, actor: str | None) -> dict[str, object]:
    return {
        "id": event_id,
        "stream": "penpay.payments",
        "aggregate_type": "Transaction",
        "aggregate_id": "tx-1",
        "aggregate_version": 1,
        "event_type": "TransactionFailed",
        "payload": payload,
        "occurred_at": AT,
        "published_at": None,
        "publish_attempts": 0,
        "actor": actor,
    }

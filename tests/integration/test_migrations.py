"""Alembic: upgrade and downgrade on empty databases, and the schema agrees with persistence.tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from persistence import migrate
from persistence.engine import create_engine
from persistence.schema_compare import compare_type
from persistence.tables import metadata
from tests import databases

pytestmark = pytest.mark.integration

EXPECTED_TABLES = {
    # PEC 3.4.1 and 11
    "users", "user_profile", "user_compliance", "user_address", "user_phone_verification",
    "deriv_accounts", "transactions", "mpesa_requests", "mpesa_disbursements", "deriv_transfers",
    "deriv_withdrawals", "idempotency_keys", "domain_events", "audit_logs", "ledger_accounts",
    "ledger_entries",
    # what the flows need
    "ledger_postings", "user_devices", "processed_events", "deriv_gateway_operations",
}  # fmt: skip

T = TypeVar("T")


@pytest.fixture(params=["mariadb", "sqlite"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    name, url = databases.create_mysql_database(migrated=False)
    yield url
    databases.drop_mysql_database(name)


async def _inspect(url: str, fn: Callable[[Connection], T]) -> T:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(fn)
    finally:
        await engine.dispose()


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": compare_type})
    return list(compare_metadata(context, metadata))


async def test_upgrade_head_creates_every_table_and_matches_the_metadata(empty_database_url: str) -> None:
    await migrate.upgrade_async(empty_database_url)

    tables = await _inspect(empty_database_url, lambda c: set(inspect(c).get_table_names()))
    assert tables >= EXPECTED_TABLES
    assert await migrate.current_revision(empty_database_url) == migrate.head_revision(empty_database_url)
    assert await _inspect(empty_database_url, _schema_diff) == []


async def test_downgrade_base_removes_everything(empty_database_url: str) -> None:
    await migrate.upgrade_async(empty_database_url)
    await migrate.downgrade_async(empty_database_url)

    tables = await _inspect(empty_database_url, lambda c: set(inspect(c).get_table_names()))
    assert tables <= {"alembic_version"}
    assert await migrate.current_revision(empty_database_url) is None


async def test_database_enforces_the_uniqueness_the_flows_rely_on(empty_database_url: str) -> None:
    await migrate.upgrade_async(empty_database_url)

    def unique_column_sets(connection: Connection) -> set[tuple[str, tuple[str, ...]]]:
        inspector = inspect(connection)
        found: set[tuple[str, tuple[str, ...]]] = set()
        for table in inspector.get_table_names():
            for constraint in inspector.get_unique_constraints(table):
                found.add((table, tuple(constraint["column_names"])))
            for index in inspector.get_indexes(table):
                if index["unique"]:
                    found.add((table, tuple(c for c in index["column_names"] if c)))
        return found

    found = await _inspect(empty_database_url, unique_column_sets)
    assert {
        ("deriv_accounts", ("user_id", "currency")),
        ("idempotency_keys", ("scope", "key_hash")),
        ("mpesa_requests", ("checkout_request_id",)),
        ("mpesa_requests", ("mpesa_receipt_number",)),
        ("mpesa_disbursements", ("originator_conversation_id",)),
        ("deriv_transfers", ("deriv_transaction_id",)),
        ("deriv_withdrawals", ("deriv_transaction_id",)),
        ("transactions", ("idempotency_key_hash",)),
    } <= found


async def test_0025_renames_the_unpublished_b2c_events_and_back(empty_database_url: str) -> None:
    """Outbox rows of the adapter's old B2C names that no relay published take the aggregate's
    names; published rows and other streams keep theirs; the downgrade renames back."""
    import json
    import uuid
    from datetime import UTC, datetime

    from sqlalchemy import insert, select

    from persistence.tables import domain_events

    at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    rows = {
        "result": (
            "penpay.mpesa",
            "MpesaB2CResultRecorded",
            {"outcome": "SUCCESS_RECORDED", "result_code": "0"},
        ),
        "status_failed": ("penpay.mpesa", "MpesaB2CResultRecorded", {"outcome": "FAILURE_RECORDED"}),
        "timeout": ("penpay.mpesa", "MpesaB2COutcomeUnknown", {"outcome": "TIMEOUT_RECORDED"}),
        "confirmed": ("penpay.mpesa", "MpesaB2CConfirmed", {"outcome": "CONFIRMED"}),
        "published": ("penpay.mpesa", "MpesaB2CConfirmed", {"outcome": "CONFIRMED"}),
        "stk": ("penpay.payments", "MpesaCallbackReceived", {"checkout_request_id": "ws_CO_1"}),
    }
    ids = {name: uuid.uuid4() for name in rows}
    await migrate.upgrade_async(empty_database_url, "0024")
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as conn:
            for name, (stream, event_type, payload) in rows.items():
                await conn.execute(
                    insert(domain_events).values(
                        id=ids[name],
                        stream=stream,
                        aggregate_type="Transaction",
                        aggregate_id=str(uuid.uuid4()),
                        aggregate_version=None,
                        event_type=event_type,
                        payload=json.dumps(payload, separators=(",", ":"), sort_keys=True),
                        occurred_at=at,
                        published_at=at if name == "published" else None,
                        publish_attempts=0,
                    )
                )

        async def names() -> dict[str, str]:
            async with engine.connect() as conn:
                found = (await conn.execute(select(domain_events.c.id, domain_events.c.event_type))).all()
            by_id = {row.id: row.event_type for row in found}
            return {name: by_id[ids[name]] for name in rows}

        await migrate.upgrade_async(empty_database_url, "0025")
        assert await names() == {
            "result": "MpesaCallbackReceived",
            "status_failed": "MpesaDisbursementFailed",
            "timeout": "MpesaDisbursementOutcomeUnknown",
            "confirmed": "MpesaDisbursementCompleted",
            "published": "MpesaB2CConfirmed",
            "stk": "MpesaCallbackReceived",
        }
        await migrate.downgrade_async(empty_database_url, "0024")
        assert await names() == {name: event_type for name, (_, event_type, _) in rows.items()}
    finally:
        await engine.dispose()

"""The continuous auditor on a real MariaDB: healthy on a clean world, each broken invariant seeded by
SQL found (and alerted once), checkpoints that advance only past what was verified, floats compared
with the providers' balances, verdicts stored for the ops console."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from application.alerts import ALERTS_LOGGER
from domain.shared.clock import FixedClock
from domain.shared.json_value import JSONValue
from domain.wallet.money import Currency, Money
from mpesa_adapter.callback_store import (
    ADAPTER_ACTOR,
    BALANCE_QUERY_ANSWERED,
    BALANCE_QUERY_SUBJECT,
)
from persistence import ledger_balances
from persistence.audit import AuditRecord, seal_pending, write_pending
from persistence.auditor_store import Verdict, read_checkpoint, recent_verdicts, write_checkpoint
from persistence.tables import audit_logs, ledger_accounts, transactions
from tests.consistency.helpers import World, insert_posting, raw_sql, tx_uuid
from workers.auditor import CHECKS, Auditor, AuditorConfig, parse_utility_balance

pytestmark = pytest.mark.integration


async def _now(engine: AsyncEngine) -> datetime:
    """The auditor's 'now': just after the world's newest transaction (no wall clock in tests)."""
    async with engine.connect() as conn:
        newest: datetime = (
            await conn.execute(sa.select(sa.func.max(transactions.c.updated_at)))
        ).scalar_one()
    return newest + timedelta(minutes=1)


async def _auditor(
    world: World, *, deriv: Callable[[], Awaitable[Money]] | None = None, now: datetime | None = None
) -> Auditor:
    clock = FixedClock(now or await _now(world.engine))
    config = AuditorConfig(stale_after=timedelta(minutes=15))
    return Auditor(world.engine, config=config, clock=clock, deriv_balance=deriv)


def _status(verdicts: list[Verdict], check: str) -> str:
    return next(str(v.status) for v in verdicts if v.check == check)


def _failed(verdicts: list[Verdict]) -> set[str]:
    return {v.check for v in verdicts if v.failed}


async def test_a_clean_world_is_healthy_and_its_verdicts_are_stored(world: World) -> None:
    auditor = await _auditor(world)
    verdicts = await auditor.run_once()

    assert _failed(verdicts) == set(), [v.summary for v in verdicts if v.failed]
    assert [v.check for v in verdicts] == list(CHECKS)
    assert _status(verdicts, "float_deriv") == "SKIPPED"  # no gateway given
    assert _status(verdicts, "float_mpesa") == "SKIPPED"  # no Account Balance answered yet
    async with world.engine.connect() as conn:
        stored = await recent_verdicts(conn)
    assert {v.check: v.status for v in stored} == {v.check: v.status for v in verdicts}
    assert REGISTRY.get_sample_value("penpay_audit_check_ok", {"check": "ledger_sums"}) == 1


async def test_an_entry_without_its_counterpart_breaks_the_sums_and_the_balance(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    auditor = await _auditor(world)
    assert not _failed(await auditor.run_once())
    with raw_sql(world.url) as conn:  # a lone debit on the M-Pesa float: no credit, balance not moved
        insert_posting(conn, [(world.accounts.mpesa_float, "DEBIT", 100, "KES")], adjust_balances=False)

    with caplog.at_level(logging.ERROR, logger=ALERTS_LOGGER):
        first = await auditor.run_once()
        second = await auditor.run_once()

    assert {"ledger_sums", "account_balances"} <= _failed(first)
    assert next(v for v in first if v.check == "ledger_sums").details["sums"]["KES"] == 100
    mismatch = next(v for v in first if v.check == "account_balances").details["mismatches"]
    assert [m["account"] for m in mismatch] == ["system:mpesa_float:KES"]
    assert _failed(second) == _failed(first)
    kinds = [getattr(r, "alert", None) for r in caplog.records if r.name == ALERTS_LOGGER]
    assert kinds.count("audit_ledger_sums") == 1  # raised when it broke, not again while it stays broken
    assert REGISTRY.get_sample_value("penpay_audit_ledger_sum_minor", {"currency": "KES"}) == 100


async def test_a_no_overdraft_account_below_zero_is_found(world: World) -> None:
    auditor = await _auditor(world)
    with raw_sql(world.url) as conn:
        conn.execute(
            sa.update(ledger_accounts)
            .where(ledger_accounts.c.id == world.accounts.wallet_kes.value)
            .values(balance_cents=-1)
        )
    verdicts = await auditor.run_once()
    assert "no_overdraft" in _failed(verdicts)
    overdrawn = next(v for v in verdicts if v.check == "no_overdraft").details["accounts"]
    assert [a["stored_cents"] for a in overdrawn] == [-1]


async def test_a_balance_that_is_not_its_entries_is_found(world: World) -> None:
    auditor = await _auditor(world)
    with raw_sql(world.url) as conn:
        conn.execute(
            sa.update(ledger_accounts)
            .where(ledger_accounts.c.id == world.accounts.deriv_float.value)
            .values(balance_cents=ledger_accounts.c.balance_cents + 1)
        )
    verdicts = await auditor.run_once()
    assert _failed(verdicts) == {"account_balances"}


async def test_float_funding_booked_to_suspense_or_capital_moved_otherwise_is_found(world: World) -> None:
    auditor = await _auditor(world)
    assert "funding_in_capital" not in _failed(await auditor.run_once())
    kes = "KES"
    with raw_sql(world.url) as conn:
        # funding booked the way it was before CAPITAL existed, and capital spent on FX
        insert_posting(
            conn,
            [
                (world.accounts.mpesa_float, "DEBIT", 500_00, kes),
                (world.accounts.suspense_kes, "CREDIT", 500_00, kes),
            ],
            description="float funding: the old way",
        )
        insert_posting(
            conn,
            [(world.accounts.capital_kes, "DEBIT", 5_00, kes), (world.accounts.fx_kes, "CREDIT", 5_00, kes)],
        )
    verdicts = await auditor.run_once()
    assert _failed(verdicts) == {"funding_in_capital"}
    verdict = next(v for v in verdicts if v.check == "funding_in_capital")
    assert verdict.details["funding_in_suspense_minor"] == {"KES": 500_00}
    assert len(verdict.details["capital_misused"]) == 1
    assert "500.00 KES of float funding in SUSPENSE" in verdict.summary, verdict.summary


async def test_a_row_slipped_into_the_audit_chain_is_found(world: World) -> None:
    auditor = await _auditor(world)
    assert not _failed(await auditor.run_once())
    with raw_sql(world.url) as conn:
        conn.execute(
            sa.insert(audit_logs).values(
                occurred_at=datetime(2030, 1, 1, tzinfo=UTC),
                actor="intruder",
                action="ledger.rewritten",
                subject_type="LedgerAccount",
                subject_id="x",
                details="{}",
                prev_hash="0" * 64,
                row_hash="f" * 64,
            )
        )
    verdicts = await auditor.run_once()
    assert _failed(verdicts) == {"audit_chain"}
    problems = next(v for v in verdicts if v.check == "audit_chain").details["problems"]
    assert any("chain broken" in p for p in problems)


async def test_records_left_unsealed_too_long_raise_one_alert_not_a_failed_check(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    now = await _now(world.engine)
    auditor = await _auditor(world, now=now)
    waiting = AuditRecord(now - timedelta(minutes=10), "api", "Waiting", "Test", "w-1", {})
    async with world.engine.begin() as conn:  # committed, and no sealer runs
        await write_pending(conn, [waiting])
    with caplog.at_level(logging.ERROR, logger=ALERTS_LOGGER):
        first = await auditor.run_once()
        await auditor.run_once()  # still behind: not alerted again
    alerts = [getattr(r, "alert", None) for r in caplog.records if r.name == ALERTS_LOGGER]
    assert alerts == ["audit_seal_behind"]
    assert "audit_chain" not in _failed(first)  # the record is durable; only its chaining is late
    details = next(v for v in first if v.check == "audit_chain").details
    assert details["oldest_pending_seconds"] == 600.0
    assert REGISTRY.get_sample_value("penpay_audit_oldest_pending_seconds") == 600.0


async def test_a_transaction_past_its_time_limit_is_found_by_status(world: World) -> None:
    now = await _now(world.engine)
    auditor = await _auditor(world, now=now)
    assert "stale_transactions" not in _failed(await auditor.run_once())
    with raw_sql(world.url) as conn:
        conn.execute(
            sa.update(transactions)
            .where(transactions.c.id == tx_uuid(world.pending_deposit))
            .values(updated_at=now - timedelta(hours=1))
        )
    verdicts = await auditor.run_once()
    assert _failed(verdicts) == {"stale_transactions"}
    stale = next(v for v in verdicts if v.check == "stale_transactions")
    assert stale.details["by_status"] == {"DEPOSIT AWAITING_MPESA": 1}
    assert (
        REGISTRY.get_sample_value(
            "penpay_audit_transactions_past_limit", {"type": "DEPOSIT", "status": "AWAITING_MPESA"}
        )
        == 1
    )


async def test_checkpoints_advance_and_the_next_run_reads_only_what_is_new(world: World) -> None:
    auditor = await _auditor(world)
    await auditor.run_once()
    async with world.engine.connect() as conn:
        chain = await read_checkpoint(conn, "audit_chain")
        entries = await read_checkpoint(conn, "account_balances")
    assert chain is not None and entries is not None
    async with world.engine.begin() as conn:  # one new audited action, sealed as the sealer would
        await write_pending(conn, [_record("ops.note", "n-1", {"note": "new"})])
        await seal_pending(conn)

    verdicts = await auditor.run_once()

    assert not _failed(verdicts)
    walked = next(v for v in verdicts if v.check == "audit_chain").details
    assert walked["from_row"] == chain["row_id"] and walked["rows_checked"] == 1
    async with world.engine.connect() as conn:
        moved = await read_checkpoint(conn, "audit_chain")
    assert moved is not None and moved["row_id"] > chain["row_id"] and moved["rows"] == chain["rows"] + 1
    balances = next(v for v in verdicts if v.check == "account_balances").details
    assert balances["from"] == entries["entries_until"]


async def test_the_floats_are_compared_with_the_providers_balances(world: World) -> None:
    async with world.engine.connect() as conn:
        ledger_usd = int(
            (
                await conn.execute(
                    sa.select(ledger_balances.balance()).where(
                        ledger_accounts.c.id == world.accounts.deriv_float.value
                    )
                )
            ).scalar_one()
        )
        ledger_kes = int(
            (
                await conn.execute(
                    sa.select(ledger_balances.balance()).where(
                        ledger_accounts.c.id == world.accounts.mpesa_float.value
                    )
                )
            ).scalar_one()
        )
    deriv_says = Money(ledger_usd + 5_00, Currency.USD)  # within the USD 100 tolerance

    async def deriv() -> Money:
        return deriv_says

    auditor = await _auditor(world, deriv=deriv)
    await _answer_balance(world.engine, ledger_kes - 50_000_00, await _now(world.engine))  # KES 50,000 short

    verdicts = await auditor.run_once()

    assert _status(verdicts, "float_deriv") == "OK"
    assert next(v for v in verdicts if v.check == "float_deriv").details["difference_cents"] == -5_00
    assert _status(verdicts, "float_mpesa") == "FAIL"
    mpesa = next(v for v in verdicts if v.check == "float_mpesa").details
    assert mpesa["difference_cents"] == 50_000_00 and mpesa["conversation_id"] == "AG_test_balance"

    deriv_says = Money(ledger_usd + 200_00, Currency.USD)  # beyond tolerance
    assert _status(await auditor.run_once(), "float_deriv") == "FAIL"


async def test_the_m_pesa_float_waits_for_every_shortcode_s_balance(world: World) -> None:
    now = await _now(world.engine)
    config = AuditorConfig(stale_after=timedelta(minutes=15))
    auditor = Auditor(
        world.engine, config=config, clock=FixedClock(now), mpesa_shortcodes=("174379", "600992")
    )
    await _answer_balance(world.engine, 1_000_00, now, shortcode="174379")
    (mpesa,) = [v for v in await auditor.run_once() if v.check == "float_mpesa"]
    assert (str(mpesa.status), mpesa.summary) == (
        "SKIPPED",
        "no M-Pesa Account Balance result recorded yet for shortcode 600992",
    )


def test_the_utility_account_is_read_from_darajas_balance_string() -> None:
    text = "Working Account|KES|10.00|10.00|0.00|0.00&Utility Account|KES|481000.50|481000.00|0.00|0.00"
    assert parse_utility_balance(text) == Money(48_100_000, Currency.KES)
    assert parse_utility_balance("Working Account|KES|1.00|1.00|0.00|0.00") is None
    assert parse_utility_balance(None) is None


def _record(
    action: str, subject: str, details: dict[str, JSONValue], at: datetime | None = None
) -> AuditRecord:
    return AuditRecord(
        occurred_at=at or datetime(2026, 1, 1, tzinfo=UTC),
        actor=ADAPTER_ACTOR,
        action=action,
        subject_type=BALANCE_QUERY_SUBJECT,
        subject_id=subject,
        details=details,
    )


async def _answer_balance(
    engine: AsyncEngine, utility_cents: int, at: datetime, shortcode: str | None = None
) -> None:
    """An Account Balance result as the M-Pesa adapter records one it took."""
    whole, cents = divmod(utility_cents, 100)
    amount = f"{whole}.{cents:02d}"
    text = f"Working Account|KES|0.00|0.00|0.00|0.00&Utility Account|KES|{amount}|{amount}|0.00|0.00"
    async with engine.begin() as conn:
        await write_pending(
            conn,
            [
                _record(
                    BALANCE_QUERY_ANSWERED,
                    f"AG_test_balance{shortcode or ''}",
                    {"result_code": 0, "account_balance": text, "shortcode": shortcode},
                    at,
                )
            ],
        )
        await seal_pending(conn)


async def test_a_balance_changed_without_an_entry_is_found_by_the_periodic_full_pass(world: World) -> None:
    now = await _now(world.engine)
    auditor = await _auditor(world, now=now)
    await auditor.run_once()  # the first run is a full pass
    async with world.engine.begin() as conn:  # as if every entry had been read long ago
        await write_checkpoint(
            conn,
            "account_balances",
            {"entries_until": (now + timedelta(days=365)).isoformat(), "full_at": now.isoformat()},
            now=now,
        )
    with raw_sql(world.url) as conn:
        conn.execute(
            sa.update(ledger_accounts)
            .where(ledger_accounts.c.id == world.accounts.suspense_kes.value)
            .values(balance_cents=ledger_accounts.c.balance_cents + 1)
        )

    incremental = await auditor.run_once()
    assert _status(incremental, "account_balances") == "OK"  # no entry touched the account
    later = await _auditor(world, now=now + auditor.config.full_pass_every)
    full = await later.run_once()
    assert _status(full, "account_balances") == "FAIL"
    assert next(v for v in full if v.check == "account_balances").details["full_pass"] is True


async def test_a_float_s_leased_total_and_its_live_leases_are_checked(world: World) -> None:
    from domain.shared.ids import new_uuid7
    from persistence import float_leases
    from persistence.tables import float_leases as leases

    now = await _now(world.engine)
    auditor = await _auditor(world, now=now)
    assert "float_leases" not in _failed(await auditor.run_once())
    lease_id = new_uuid7()
    with raw_sql(world.url) as conn:  # a lease the float's leased total does not count
        conn.execute(
            sa.insert(leases).values(
                id=lease_id,
                account_id=world.accounts.deriv_float.value,
                owner="test",
                allowance_cents=100_00,
                created_at=now,
                expires_at=now + float_leases.TTL,
                retired_at=None,
            )
        )
    verdicts = await auditor.run_once()
    assert _failed(verdicts) == {"float_leases"}
    verdict = next(v for v in verdicts if v.check == "float_leases")
    assert verdict.details["mismatched"] == [
        {"account": "system:deriv_agent_float:USD", "leased_minor": 0, "allowances_minor": 100_00}
    ]

    with raw_sql(world.url) as conn:  # counted: healthy
        conn.execute(
            sa.update(ledger_accounts)
            .where(ledger_accounts.c.id == world.accounts.deriv_float.value)
            .values(leased_cents=100_00)
        )
    assert "float_leases" not in _failed(await auditor.run_once())

    # its process died and nobody retired it: after the relay's turn and the auditor's grace, found
    late = now + float_leases.TTL + float_leases.ABANDONED_AFTER + AuditorConfig().lease_grace
    assert "float_leases" not in _failed(await (await _auditor(world, now=late)).run_once())
    later = await _auditor(world, now=late + timedelta(seconds=1))
    verdict = next(v for v in await later.run_once() if v.check == "float_leases")
    assert verdict.failed and verdict.details["abandoned"][0]["lease_id"] == str(lease_id)

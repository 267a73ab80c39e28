"""The CI-sized chaos soak: 200 transactions through every PenPay process on a private MariaDB
and Redis while processes, servers, WebSockets and the simulators fail by seed; then the
invariants. The last tests corrupt the outcome on purpose and see the verdict flag it, so a
soak that passes is a soak that could have failed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import websockets
from sqlalchemy import select, update

from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN
from persistence.engine import create_engine
from persistence.tables import ledger_accounts, transactions
from proving.chaos.report import SoakReport
from proving.chaos.soak import ChaosSoak, SoakConfig

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SEED = 2024
TRANSACTIONS = 200
DURATION = 75.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def soak(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[ChaosSoak, SoakReport]]:
    workdir = tmp_path_factory.mktemp("chaos")
    config = SoakConfig(
        seed=SEED, transactions=TRANSACTIONS, duration=DURATION, workdir=workdir, settle_timeout=180
    )
    async with ChaosSoak(config, say=lambda line: print(f"[chaos] {line}")) as running:
        report = await running.run()
        print(report.render())
        (workdir / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
        yield running, report


@pytest.mark.timeout(900)
async def test_nothing_is_lost_or_paid_twice_under_chaos(soak: tuple[ChaosSoak, SoakReport]) -> None:
    _, report = soak

    assert report.failures == [], report.render()
    assert report.ok
    assert report.settled
    assert report.lost == [] and report.paid_twice == []
    assert set(report.ledger_sums.values()) == {0}
    assert report.consistency.unresolved == []
    assert report.audit_problems == [] and report.audit_rows > TRANSACTIONS
    assert all(item.reason for item in report.consistency.needs_review)


async def test_the_soak_really_ran_traffic_and_faults(soak: tuple[ChaosSoak, SoakReport]) -> None:
    running, report = soak
    statuses = report.consistency.counts_by_status

    assert sum(statuses.values()) >= TRANSACTIONS * 0.8
    assert {"COMPLETED", "FAILED", "REVERSED"} <= set(statuses)
    assert len(report.faults) == len(running.schedule.faults)
    struck = [f for f in report.faults if f["outcome"] == "applied" or f["outcome"].startswith("killed")]
    assert {f["kind"] for f in struck} == {f.kind for f in running.schedule.faults}
    assert any(f["kind"] == "kill" and f["target"].startswith("gateway") for f in struck)


async def test_v3_and_rest_users_both_moved_money(soak: tuple[ChaosSoak, SoakReport]) -> None:
    running, _ = soak
    engine = create_engine(running.database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(transactions.c.type, transactions.c.deriv_login_id).where(
                        transactions.c.status == "COMPLETED"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    api_of = {(t, "rest" if login.startswith("@") else "v3") for t, login in rows}
    assert {("DEPOSIT", "v3"), ("DEPOSIT", "rest"), ("WITHDRAWAL", "v3"), ("WITHDRAWAL", "rest")} <= api_of


async def _completed_deposit(running: ChaosSoak) -> tuple[str, int, str]:
    engine = create_engine(running.database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        transactions.c.id,
                        transactions.c.converted_amount_cents,
                        transactions.c.deriv_login_id,
                    )
                    .where(
                        transactions.c.type == "DEPOSIT",
                        transactions.c.status == "COMPLETED",
                        ~transactions.c.deriv_login_id.startswith("@"),  # a v3 user's: paid again on v3
                    )
                    .limit(1)
                )
            ).one()
    finally:
        await engine.dispose()
    return str(row.id), int(row.converted_amount_cents), str(row.deriv_login_id)


async def test_a_deposit_paid_twice_at_deriv_fails_the_soak(soak: tuple[ChaosSoak, SoakReport]) -> None:
    running, _ = soak
    assert running.cluster is not None
    tx_id, cents, loginid = await _completed_deposit(running)
    # The agent sends the same deposit again, behind PenPay's back, with PenPay's own reference.
    url = running.cluster.addresses["deriv_ws"] + "?app_id=1089"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"authorize": DEFAULT_AGENT_TOKEN, "req_id": 1}))
        assert "error" not in json.loads(await ws.recv())
        await ws.send(
            json.dumps(
                {
                    "paymentagent_transfer": 1,
                    "amount": cents / 100,  # a JSON number, as Deriv expects
                    "currency": "USD",
                    "transfer_to": loginid,
                    "description": f"PenPay {tx_id}",
                    "req_id": 2,
                }
            )
        )
        answer = json.loads(await ws.recv())
        assert answer.get("paymentagent_transfer") == 1, answer

    report = await running.verdict()

    assert not report.ok
    assert any(tx_id in line for line in report.paid_twice), report.paid_twice
    assert any("payments made twice" in failure for failure in report.failures)


async def test_a_tampered_ledger_balance_fails_the_soak(soak: tuple[ChaosSoak, SoakReport]) -> None:
    running, _ = soak
    engine = create_engine(running.database_url, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(ledger_accounts)
                .where(ledger_accounts.c.kind == "MPESA_FLOAT")
                .values(balance_cents=ledger_accounts.c.balance_cents + 100)
            )
    finally:
        await engine.dispose()

    report = await running.verdict()

    assert not report.ok
    assert "BALANCE_MISMATCH" in report.consistency.codes()


async def test_the_report_lands_in_the_workdir(soak: tuple[ChaosSoak, SoakReport]) -> None:
    running, _ = soak
    written = json.loads(Path(running.config.workdir, "report.json").read_text())

    assert written["seed"] == SEED
    assert written["schedule_fingerprint"] == running.schedule.fingerprint()

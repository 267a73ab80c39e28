"""`penpay check`, run as a user runs it (a subprocess), on MariaDB and SQLite.

The command judges staleness on the system clock, so the runs it checks are booked on that clock
(tests.clocks.the_processes_clock), not at the helpers' fixed instant.

The subprocess is started with asyncio so the simulators, which live in this test's event
loop, keep answering while the command reads their books.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from penpay.commands.check import duration
from persistence.tables import ledger_accounts
from tests.clocks import the_processes_clock
from tests.consistency.helpers import build_world, raw_sql
from tests.consistency.simulators import Deriv, Mpesa, run_with_books

pytestmark = pytest.mark.integration


async def penpay_check(*args: str) -> tuple[int, str, str]:
    env = {**os.environ}
    env.pop("PENPAY_DATABASE_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "penpay",
        "check",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def as_json(stdout: str) -> dict[str, Any]:
    return dict(json.loads(stdout))


async def test_check_exits_0_on_a_consistent_database_and_1_once_it_is_not(
    engine: AsyncEngine, database_url: str
) -> None:
    world = await build_world(engine, database_url, now=the_processes_clock())

    code, out, err = await penpay_check("--database-url", database_url)
    assert code == 0, out + err
    assert "RESULT: consistent" in out
    assert "Deriv refused the transfer" in out  # the transaction under review, with its reason
    if "@" in database_url:
        assert ":***@" in out and ":penpay@" not in out

    code, out, err = await penpay_check("--database-url", database_url, "--json")
    assert code == 0, out + err
    report = as_json(out)
    assert report["ok"] is True and report["violations"] == []
    assert [r["transaction_id"] for r in report["needs_review"]] == [str(world.review_deposit.id)]
    assert report["counts_by_status"]["COMPLETED"] == 2

    with raw_sql(database_url) as sql:
        sql.execute(
            ledger_accounts.update()
            .where(ledger_accounts.c.id == world.accounts.wallet_usd.value)
            .values(balance_cents=ledger_accounts.c.balance_cents + 7)
        )

    code, out, err = await penpay_check("--database-url", database_url)
    assert code == 1, out + err
    assert "BALANCE_MISMATCH" in out and "RESULT: INCONSISTENT" in out
    code, out, _ = await penpay_check("--database-url", database_url, "--json")
    assert code == 1
    assert [v["code"] for v in as_json(out)["violations"]] == ["BALANCE_MISMATCH"]


async def test_check_reports_a_stale_transaction_as_unresolved(
    engine: AsyncEngine, database_url: str
) -> None:
    world = await build_world(engine, database_url, now=the_processes_clock())
    await asyncio.sleep(1.2)

    code, out, _ = await penpay_check("--database-url", database_url, "--stale-after", "1s", "--json")

    assert code == 1
    report = as_json(out)
    assert report["violations"] == []
    assert [u["transaction_id"] for u in report["unresolved"]] == [str(world.pending_deposit.id)]


async def test_check_compares_the_simulators_books(
    engine: AsyncEngine, database_url: str, deriv: Deriv, mpesa: Mpesa
) -> None:
    run = await run_with_books(engine, database_url, deriv, mpesa, now=the_processes_clock())
    books = ["--deriv-control", str(deriv.sim.control_url), "--mpesa-control", str(mpesa.sim.base_url)]

    code, out, err = await penpay_check("--database-url", database_url, *books, "--json")
    assert code == 0, out + err
    report = as_json(out)
    assert report["books_checked"] == ["deriv", "mpesa"]
    assert {f["name"]: f["unexplained_cents"] for f in report["floats"]} == {"deriv": 0, "mpesa": 0}

    deposit = run.world.deposit
    assert deposit.converted_amount is not None
    await deriv.transfer(str(deposit.id), deposit.converted_amount.amount_minor)

    code, out, err = await penpay_check("--database-url", database_url, *books)
    assert code == 1, out + err
    assert f"PAID_TWICE: Deriv executed operation {deposit.id} 2 times" in out


async def test_check_exits_2_when_a_simulator_cannot_be_read(sqlite_url: str) -> None:
    code, _, err = await penpay_check("--database-url", sqlite_url, "--deriv-control", "http://127.0.0.1:9")

    assert code == 2
    assert "cannot read the simulators' books" in err


def test_stale_after_reads_minutes_seconds_and_hours() -> None:
    assert duration("15").total_seconds() == 900
    assert duration("90s").total_seconds() == 90
    assert duration("2h").total_seconds() == 7200
    with pytest.raises(Exception, match="not a duration"):
        duration("soon")

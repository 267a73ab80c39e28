"""`penpay worker audit --once`, run as an operator runs it: one audit of the database, each check's
verdict printed, exit 0 when nothing failed and 1 when something did."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence import ledger_balances
from persistence.tables import ledger_accounts
from tests.clocks import the_processes_clock
from tests.consistency.helpers import World, build_world, raw_sql

pytestmark = pytest.mark.integration


@pytest.fixture
async def world(engine: AsyncEngine, fresh_mariadb_url: str) -> World:
    """Booked on the system clock: the command judges its time limits on it, not on a test's."""
    return await build_world(engine, fresh_mariadb_url, now=the_processes_clock())


def audit_once(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PENPAY_DATABASE_URL": url, "PENPAY_APP_ENV": "testing"}
    return subprocess.run(
        [sys.executable, "-m", "penpay", "worker", "audit", "--once", "--no-deriv-balance"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_audit_once_says_healthy_then_names_what_broke(world: World) -> None:
    healthy = audit_once(world.url)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "OK       ledger_sums" in healthy.stdout
    assert "SKIPPED  float_deriv" in healthy.stdout

    with raw_sql(world.url) as conn:
        conn.execute(
            sa.update(ledger_accounts)
            .where(ledger_accounts.c.id == world.accounts.deriv_float.value)
            .values(balance_cents=-5 - ledger_balances.unrolled(ledger_accounts.c.id))  # the balance: -5
        )
    broken = audit_once(world.url)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "FAIL     no_overdraft" in broken.stdout
    assert "system:deriv_agent_float:USD" in broken.stdout

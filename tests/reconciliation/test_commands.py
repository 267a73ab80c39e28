"""`penpay reconcile run` / `export` as an operator runs them: a separate process, settings from the
environment, the same real stack (MariaDB, the Daraja simulator, the Deriv gateway)."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reconciliation.conftest import World, a_deposit_and_a_withdrawal
from tests.reconciliation.test_rest_statement import agent_transfers
from tests.sagas.harness import REST_AGENT_TOKEN

pytestmark = pytest.mark.integration


async def penpay(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # off the event loop: the stack this process serves must keep answering meanwhile
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "penpay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def environment(world: World, tmp_path: Path) -> dict[str, str]:
    stack = world.stack
    config = stack.daraja_config
    cert = tmp_path / "daraja.cer"
    cert.write_bytes(config.cert_pem or b"")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PENPAY_")},
        "PENPAY_APP_ENV": "testing",
        "PENPAY_DATABASE_URL": stack.database_url,
        "PENPAY_GATEWAY_ADDR": stack.gateway.address,
        "PENPAY_MPESA_BASE_URL": config.base_url,
        "PENPAY_MPESA_CONSUMER_KEY": config.consumer_key,
        "PENPAY_MPESA_CONSUMER_SECRET": config.consumer_secret,
        "PENPAY_MPESA_SHORTCODE": config.shortcode,
        "PENPAY_MPESA_PASSKEY": config.passkey,
        "PENPAY_MPESA_INITIATOR_NAME": config.initiator_name,
        "PENPAY_MPESA_INITIATOR_PASSWORD": config.initiator_password,
        "PENPAY_MPESA_CERT_FILE": str(cert),
        "PENPAY_MPESA_B2C_SHORTCODE": config.b2c_shortcode or "",
        "PENPAY_MPESA_CALLBACK_BASE_URL": config.callback_base_url,
        "PENPAY_MPESA_CALLBACK_SECRET": config.callback_secret,
        "PENPAY_RECONCILE_BALANCE_WAIT": "10",
        # the gateway has the REST transport: the agent's wallet is read too (one book, kept once)
        "PENPAY_DERIV_REST_BASE_URL": stack.rest_sim.base_url or "",
        "PENPAY_DERIV_REST_APP_ID": "app-sim-1",
        "PENPAY_DERIV_REST_AGENT_TOKEN": REST_AGENT_TOKEN,
    }


async def test_run_prints_a_progress_bar_and_export_writes_the_items_as_csv(
    world: World, tmp_path: Path
) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    # accepted by Deriv's REST API and not carried out yet: only the wallet's transactions show it
    await world.stack.rest_fault(kind="pending", endpoint="transfer", settle_after=3600, times=1)
    await agent_transfers(world, 1, "pend")
    start, end = await world.window()
    env = environment(world, tmp_path)
    done = await penpay("reconcile", "run", "--from", start.isoformat(), "--to", end.isoformat(), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[####################] 5/5" in done.stderr  # the progress bar, finished
    run_id = done.stdout.split()[1].rstrip(":")
    assert "SUCCEEDED, 0 unexplained" in done.stdout

    exported = await penpay("reconcile", "export", run_id, env=env)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    classes = sorted(r["item_class"] for r in rows)
    assert classes == ["AWAITING_PROVIDER"] + ["MATCHED"] * 6  # with the payout and the REST operation


async def test_a_window_that_ends_before_it_starts_is_refused(world: World, tmp_path: Path) -> None:
    env = environment(world, tmp_path)
    done = await penpay(
        "reconcile", "run", "--from", "2026-03-02T00:00Z", "--to", "2026-03-01T00:00Z", env=env
    )
    assert done.returncode == 2 and "--to must be after --from" in done.stderr
    bad = await penpay("reconcile", "export", "not-a-run", env=env)
    assert bad.returncode == 2 and "not a run id" in bad.stderr


async def test_the_worker_reconciles_from_its_cursor(world: World, tmp_path: Path) -> None:
    await a_deposit_and_a_withdrawal(world.stack)
    env = environment(world, tmp_path) | {"PENPAY_RECONCILE_LAG": "0"}
    done = await penpay("worker", "reconcile", "--once", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    [run] = await world.store.runs()
    assert (run.trigger, run.status, run.unexplained) == ("worker", "SUCCEEDED", 0), run
    assert await world.store.cursor("mpesa_c2b") == run.window_to  # the next run starts there

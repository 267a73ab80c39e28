"""`penpay demo` as a user runs it: a real subprocess that starts an embedded stack of its own
(SQLite in a temporary directory, in-process bus, both simulators, free ports)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

AMOUNT = r"([\d,]+\.\d\d)"


def penpay_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "penpay", "demo", *args],
        env=dict(os.environ),
        cwd=cwd,  # no ./penpay.db or .env of the repository in play
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def amount(pattern: str, text: str) -> tuple[Decimal, ...]:
    found = re.search(pattern, text)
    assert found, f"no line matches {pattern!r} in:\n{text}"
    return tuple(Decimal(group.replace(",", "")) for group in found.groups())


def test_demo_starts_its_own_stack_and_moves_money_both_ways(tmp_path: Path) -> None:
    run = penpay_demo("--start", "--timeout", "40", cwd=tmp_path)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert re.search(r"deposit \S+ completed in", out), out
    assert re.search(r"withdrawal \S+ completed in", out), out
    assert "demo passed" in out

    kes_in, usd_credited = amount(rf"deposit \S+ of KES {AMOUNT} started \(USD {AMOUNT} at", out)
    deriv_before, deriv_after = amount(rf"USD arrived on Deriv: CR90000001 USD {AMOUNT} -> USD {AMOUNT}", out)
    assert deriv_after - deriv_before == usd_credited > 0

    (charged,) = amount(rf"M-Pesa charged \+254\d+ KES {AMOUNT} by STK Push", out)
    assert charged == kes_in

    usd_out, quoted_kes = amount(rf"withdrawal \S+ of USD {AMOUNT} started \(quoted payout KES {AMOUNT}", out)
    left_from, left_to = amount(rf"USD left Deriv: CR90000001 USD {AMOUNT} -> USD {AMOUNT}", out)
    assert left_from - left_to == usd_out
    (received,) = amount(rf"KES arrived at M-Pesa: \+254\d+ received KES {AMOUNT} by B2C", out)
    assert received == quoted_kes > 0

    assert "Ledger of demo-" in out and "(8 entries, oldest first)" in out
    assert "PenPay wallet        KES 0.00, USD 0.00" in out
    assert re.fullmatch(r"ops console: .*http://127\.0\.0\.1:\d+/ops/.*", out.strip().splitlines()[-1])


def test_demo_over_deriv_rest_moves_the_user_to_the_new_api_and_moves_money_both_ways(
    tmp_path: Path,
) -> None:
    run = penpay_demo("--start", "--deriv", "rest", "--timeout", "40", cwd=tmp_path)

    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "bound Deriv account CR90000001" in out
    # the v3 binding moved to the new-API account: every later Deriv call addresses @alice_w
    assert "bound the new-API account @alice_w in place of CR90000001" in out, out
    _, usd_credited = amount(rf"deposit \S+ of KES {AMOUNT} started \(USD {AMOUNT} at", out)
    before, after = amount(rf"USD arrived on Deriv: @alice_w USD {AMOUNT} -> USD {AMOUNT}", out)
    assert after - before == usd_credited > 0
    usd_out, _ = amount(rf"withdrawal \S+ of USD {AMOUNT} started \(quoted payout KES {AMOUNT}", out)
    left_from, left_to = amount(rf"USD left Deriv: @alice_w USD {AMOUNT} -> USD {AMOUNT}", out)
    assert left_from - left_to == usd_out
    assert "demo passed" in out


def test_demo_without_a_stack_and_told_not_to_start_one_says_so_and_fails(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = probe.getsockname()[1]  # closed again: nothing listens there

    run = penpay_demo("--no-start", "--bridge", f"http://127.0.0.1:{nobody}", cwd=tmp_path)

    assert run.returncode == 1
    assert f"no PenPay HTTP bridge answers at http://127.0.0.1:{nobody}" in run.stderr

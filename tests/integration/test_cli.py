"""The `penpay` command, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def penpay(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "penpay", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_brings_an_empty_embedded_database_to_head_and_says_so(tmp_path: Path) -> None:
    env = {**os.environ, "PENPAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'penpay.db'}"}

    first = penpay("migrate", env=env)
    again = penpay("migrate", env=env)

    assert first.returncode == 0, first.stderr
    assert "is at schema revision" in first.stdout
    assert again.returncode == 0 and again.stdout == first.stdout  # idempotent
    assert (tmp_path / "penpay.db").exists()


def test_migrate_hides_the_database_password(mariadb_url: str) -> None:
    env = {**os.environ, "PENPAY_DATABASE_URL": mariadb_url}

    result = penpay("migrate", env=env)

    assert result.returncode == 0, result.stderr
    assert ":***@" in result.stdout
    password = mariadb_url.split(":")[2].split("@")[0]
    assert f":{password}@" not in result.stdout + result.stderr


def test_an_unknown_command_is_refused_with_usage() -> None:
    result = penpay("teleport", env=dict(os.environ))
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_float_fund_books_money_written_with_its_currency_and_refuses_bare_cents(tmp_path: Path) -> None:
    env = {**os.environ, "PENPAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'penpay.db'}"}
    assert penpay("migrate", env=env).returncode == 0

    funded = penpay("float", "fund", "deriv", "USD", "2500", "--note", "opening", env=env)
    bare = penpay("float", "fund", "deriv", "250000", env=env)
    drawn = penpay("float", "fund", "deriv", "USD -500.01", env=env)

    assert funded.returncode == 0, funded.stderr
    assert "DERIV_AGENT_FLOAT USD balance: 2500.00" in funded.stdout
    assert bare.returncode == 2 and "Traceback" not in bare.stderr
    assert bare.stderr.strip().splitlines() == [
        "penpay float fund: expected the amount with its currency, "
        "e.g. USD 1000 or KES 50000.00; got '250000'"
    ]
    assert "balance: 1999.99" in drawn.stdout  # the refused one booked nothing


def test_up_runs_the_whole_embedded_stack_and_stops_cleanly(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PENPAY_APP_ENV": "development",
        "PENPAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'penpay.db'}",
        "PENPAY_REDIS_URL": "",
        "PENPAY_DERIV_WS_URL": "ws://127.0.0.1:18765/websockets/v3",
        "PENPAY_MPESA_BASE_URL": "http://127.0.0.1:18766",
        "PENPAY_MPESA_CALLBACK_BASE_URL": "http://127.0.0.1:18767",
        "PENPAY_GATEWAY_ADDR": "127.0.0.1:18052",
        "PENPAY_GRPC_ADDR": "127.0.0.1:18051",
        "PENPAY_HTTP_ADDR": "127.0.0.1:18080",
        "PENPAY_METRICS_ADDR": "127.0.0.1:18100",
        "PENPAY_DERIV_REST_BASE_URL": "http://127.0.0.1:18770",
        "PENPAY_SMS_AT_BASE_URL": "http://127.0.0.1:18769",
    }

    run = subprocess.run(
        [sys.executable, "-m", "penpay", "up", "--state-dir", str(tmp_path / "state"), "--for-seconds", "2"],
        env=env, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip

    assert run.returncode == 0, run.stderr[-2000:]
    for part in ("Deriv gateway (gRPC)", "HTTP/JSON bridge", "M-Pesa callbacks", "ready", "stopped"):
        assert part in run.stdout, run.stdout
    assert re.search(r"ops console +http://127\.0\.0\.1:18080/ops/", run.stdout), run.stdout
    tokens = (tmp_path / "state" / "ops-tokens.txt").read_text().splitlines()
    assert len([line for line in tokens if line and not line.startswith("#")]) == 2  # four-eyes: two people
    assert (tmp_path / "state" / "ops-tokens.txt").stat().st_mode & 0o077 == 0

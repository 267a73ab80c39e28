"""`penpay http`: registered with the CLI, discovers the generated services, serves, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from penpay.cli import build_parser
from penpay_api.http import discover_services, parse_listen
from proving.cluster import free_port as _free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_the_command_is_registered_with_its_options() -> None:
    args = build_parser().parse_args(
        ["http", "--listen", "127.0.0.1:9999", "--grpc-target", "127.0.0.1:1", "--service", "a.v1.AService"]
    )
    assert (args.command, args.listen, args.grpc_target, args.services) == (
        "http",
        "127.0.0.1:9999",
        "127.0.0.1:1",
        ["a.v1.AService"],
    )
    defaults = build_parser().parse_args(["http"])
    assert defaults.listen is None and defaults.grpc_target is None and defaults.services is None


@pytest.mark.unit
def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError):
        parse_listen("localhost")


@pytest.mark.unit
def test_discovery_skips_missing_packages_and_keeps_services_with_rules() -> None:
    found = discover_services(["penpay.nosuchthing.v1", "penpay.payments.v1", "penpay.deriv.v1"])
    assert found == ["penpay.payments.v1.PaymentsService"]  # the Deriv gateway service has no http rule


@pytest.mark.integration
async def test_penpay_http_serves_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    backend = f"127.0.0.1:{_free_port()}"  # nothing listens there
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "penpay",
        "http",
        "--listen",
        "127.0.0.1:0",
        "--grpc-target",
        backend,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert found, line
        base = f"http://127.0.0.1:{found.group(1)}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
            async with http.get(f"{base}/openapi.json") as response:
                document = await response.json()
            assert "/v1/deposits" in document["paths"]
            async with http.get(f"{base}/v1/transactions", headers={"Grpc-Timeout": "2S"}) as response:
                assert response.status == 503  # forwarded over gRPC to a backend that is not there
                assert (await response.json())["code"] == 14
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.integration
async def test_penpay_http_refuses_an_unknown_service() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "penpay",
        "http",
        "--listen",
        "127.0.0.1:0",
        "--service",
        "penpay.nope.v1.NoService",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert b"penpay.nope.v1.NoService" in out


@pytest.mark.integration
async def test_penpay_http_with_an_explicit_penpay_service() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "penpay",
        "http",
        "--listen",
        "127.0.0.1:0",
        "--grpc-target",
        "127.0.0.1:1",
        "--service",
        "penpay.payments.v1.PaymentsService",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert "penpay.payments.v1.PaymentsService" in line and "AuthService" not in line
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

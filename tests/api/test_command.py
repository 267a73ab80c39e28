"""`penpay api` as an operator runs it: a process serving every service, health, reflection and
metrics, stopped cleanly by SIGTERM or SIGINT; `--issue-operator-token` for OpsService."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from penpay.auth.v1 import auth_pb2, auth_pb2_grpc
from penpay.cli import build_parser
from penpay.ops.v1 import ops_pb2, ops_pb2_grpc
from proving.cluster import free_port

from .conftest import PASSWORD, unique_email, unique_phone

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PENPAY = [sys.executable, "-m", "penpay"]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "jwt.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


@pytest.fixture
def env(database_url: str, key_file: Path) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("PENPAY_") or k == "PENPAY_SHARED_DIR"}
    values.update(
        {
            "PENPAY_APP_ENV": "testing",
            "PENPAY_DATABASE_URL": database_url,
            "PENPAY_REDIS_URL": "",
            "PENPAY_GRPC_ADDR": f"127.0.0.1:{free_port()}",
            "PENPAY_METRICS_ADDR": f"127.0.0.1:{free_port()}",
            "PENPAY_GATEWAY_ADDR": "127.0.0.1:9",
            "PENPAY_JWT_PRIVATE_KEYS": f"k1:{key_file}",
            # cheap Argon2id (allowed outside production only)
            "PENPAY_ARGON2_TIME_COST": "1",
            "PENPAY_ARGON2_MEMORY_KIB": "1024",
            "PENPAY_ARGON2_PARALLELISM": "1",
        }
    )
    return values


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen([*PENPAY, "api"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert "penpay api listening on" in line, (line, (tmp_path / "api.log").read_text())
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


def test_the_cli_knows_the_api_command() -> None:
    args = build_parser().parse_args(["api", "--listen", "127.0.0.1:0", "--grace", "1"])
    assert args.listen == "127.0.0.1:0" and args.grace == 1.0 and callable(args.handler)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_penpay_api_serves_and_stops_cleanly(
    server: subprocess.Popen[bytes], env: dict[str, str], stop_signal: signal.Signals
) -> None:
    with grpc.insecure_channel(env["PENPAY_GRPC_ADDR"]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "penpay.auth.v1.AuthService", "penpay.payments.v1.PaymentsService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status == 1
        reply = auth_pb2_grpc.AuthServiceStub(channel).Register(
            auth_pb2.RegisterRequest(email=unique_email(), phone_number=unique_phone(), password=PASSWORD),
            timeout=10,
        )
        assert reply.user_id
    with urllib.request.urlopen(f"http://{env['PENPAY_METRICS_ADDR']}/metrics", timeout=10) as response:
        body = response.read().decode()
    registered = [
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "penpay_api_requests_total"
        and sample.labels == {"method": "/penpay.auth.v1.AuthService/Register", "code": "OK"}
    ]
    assert registered == [1.0]
    started = time.monotonic()
    server.send_signal(stop_signal)
    assert server.wait(20) == 0
    assert time.monotonic() - started < 15


def test_an_operator_token_from_the_command_opens_ops(
    server: subprocess.Popen[bytes], env: dict[str, str]
) -> None:
    issued = subprocess.run(
        [*PENPAY, "api", "--issue-operator-token", "alice"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert issued.returncode == 0, issued.stderr.decode()
    token = issued.stdout.decode().splitlines()[0].strip()
    with grpc.insecure_channel(env["PENPAY_GRPC_ADDR"]) as channel:
        stats = ops_pb2_grpc.OpsServiceStub(channel).GetOutboxStats(
            ops_pb2.GetOutboxStatsRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10
        )
    assert stats.pending == 0


def test_an_operator_token_needs_the_servers_keys(env: dict[str, str]) -> None:
    without = {k: v for k, v in env.items() if k != "PENPAY_JWT_PRIVATE_KEYS"}
    issued = subprocess.run(
        [*PENPAY, "api", "--issue-operator-token", "alice"],
        cwd=ROOT,
        env=without,
        capture_output=True,
        timeout=60,
    )
    assert issued.returncode == 2 and b"PENPAY_JWT_PRIVATE_KEYS" in issued.stdout

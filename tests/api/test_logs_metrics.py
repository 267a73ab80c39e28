"""Request logs (one line per call, never a secret) and Prometheus metrics on the metrics port."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import grpc
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from penpay.auth.v1 import auth_pb2
from penpay.payments.v1 import payments_pb2
from penpay.wallet.v1 import wallet_pb2
from security.logs import is_sensitive_key

from .conftest import CLIENT_TOKEN, PASSWORD, Gateway, Harness, StartApi

pytestmark = pytest.mark.integration


async def test_logs_name_each_call_and_hold_no_secret(start_api: StartApi, gateway: Gateway) -> None:
    api = await start_api(gateway=gateway)
    key = f"idem-{secrets.token_hex(8)}"
    with structlog.testing.capture_logs() as events:
        account = await api.new_account()
        await api.auth.RequestPhoneVerification(
            auth_pb2.RequestPhoneVerificationRequest(), metadata=account.auth
        )
        code = await api.latest_code(account, "sms")
        await api.auth.VerifyPhone(auth_pb2.VerifyPhoneRequest(phone_number=account.phone, code=code))
        await api.auth.BindDerivAccount(
            auth_pb2.BindDerivAccountRequest(deriv_token=CLIENT_TOKEN), metadata=account.auth
        )
        await api.payments.InitiateDeposit(
            payments_pb2.InitiateDepositRequest(amount_cents=1_300_00, currency="KES"),
            metadata=(*account.auth, ("idempotency-key", key)),
        )
        refreshed = await api.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.refresh_token))
        with pytest.raises(grpc.aio.AioRpcError):
            await api.auth.Login(
                auth_pb2.LoginRequest(
                    login=account.email, password="wrong " + PASSWORD, device_id="device-x-123"
                )
            )
        # An aborted call's status reaches the client before the server's interceptor writes its
        # line (abort sends, then raises through it): give the server's task its turn, no clock.
        for _ in range(1_000):
            if sum(1 for e in events if e["event"] == "rpc" and e["method"].endswith("/Login")) == 2:
                break
            await asyncio.sleep(0)

    text = repr(events)
    for secret in (
        PASSWORD,
        account.access_token,
        account.refresh_token,
        refreshed.access_token,
        refreshed.refresh_token,
        code,
        CLIENT_TOKEN,
        key,
    ):
        assert secret not in text, f"a secret reached the logs: {secret[:6]}..."
    calls = [e for e in events if e["event"] == "rpc"]
    methods = [e["method"].rsplit("/", 1)[1] for e in calls]
    assert methods == [
        "Register",
        "Login",
        "RequestPhoneVerification",
        "ListSentMessages",
        "VerifyPhone",
        "BindDerivAccount",
        "InitiateDeposit",
        "Refresh",
        "Login",
    ]
    assert all({"grpc_code", "duration_ms", "request_id"} <= set(e) for e in calls)
    assert calls[-1]["grpc_code"] == "UNAUTHENTICATED" and calls[-1]["reason"] == "INVALID_CREDENTIALS"
    # a field the log redactor blanks would hide what the line is for (it did, for "code")
    assert not any(is_sensitive_key(k) for e in calls for k in e)
    assert calls[2]["subject"] == account.user_id and "subject" not in calls[0]


async def test_request_ids_are_echoed_or_made(api: Harness) -> None:
    account = await api.new_account()
    given = api.wallet.GetBalances(
        wallet_pb2.GetBalancesRequest(), metadata=(*account.auth, ("x-request-id", "trace-abc.123"))
    )
    await given
    assert ("x-request-id", "trace-abc.123") in list(await given.initial_metadata())
    junk = api.wallet.GetBalances(
        wallet_pb2.GetBalancesRequest(), metadata=(*account.auth, ("x-request-id", "no spaces allowed"))
    )
    await junk
    made = dict(await junk.initial_metadata())["x-request-id"]
    assert made != "no spaces allowed" and len(made) == 16


async def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        body = await response.text()
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_count_calls_by_method_and_code(api: Harness) -> None:
    metrics = api.api.server.metrics
    assert metrics is not None and metrics.port
    register = "/penpay.auth.v1.AuthService/Register"
    balances = "/penpay.wallet.v1.WalletService/GetBalances"
    before = await _scrape(metrics.url)
    await api.register()
    with pytest.raises(grpc.aio.AioRpcError):
        await api.wallet.GetBalances(wallet_pb2.GetBalancesRequest())

    def value(samples: dict, name: str, method: str, code: str, **extra: str) -> float:  # type: ignore[type-arg]
        labels = tuple(sorted({"method": method, "code": code, **extra}.items()))
        return float(samples.get((name, labels), 0.0))

    # An aborted call's status reaches the client while the server's interceptor is still on its
    # way out (where it counts the call): scrape until the count moves, or give up after 200 looks.
    unauthenticated = value(before, "penpay_api_requests_total", balances, "UNAUTHENTICATED")
    for _ in range(200):
        after = await _scrape(metrics.url)
        if value(after, "penpay_api_requests_total", balances, "UNAUTHENTICATED") > unauthenticated:
            break
        await asyncio.sleep(0.01)

    assert value(after, "penpay_api_requests_total", register, "OK") == (
        value(before, "penpay_api_requests_total", register, "OK") + 1
    )
    assert value(after, "penpay_api_requests_total", balances, "UNAUTHENTICATED") == (
        value(before, "penpay_api_requests_total", balances, "UNAUTHENTICATED") + 1
    )
    count = "penpay_api_request_duration_seconds_count"
    assert value(after, count, register, "OK") == value(before, count, register, "OK") + 1
    assert value(after, "penpay_api_request_duration_seconds_bucket", register, "OK", le="+Inf") >= 1

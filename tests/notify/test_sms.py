"""SMS by Africa's Talking, against the simulator over a real socket: what is sent, what is refused,
per-recipient limits, masked phones in logs, and production's refusal to start without providers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import structlog
from prometheus_client import REGISTRY
from pydantic import SecretStr

from application.identity.errors import MessageNotDelivered, RateLimited
from domain.shared.clock import FixedClock
from mpesa_adapter.callback_server import CallbackServer
from mpesa_adapter.config import CallbackServerConfig
from penpay.notifiers import build_notifier, missing_provider
from penpay.settings import Settings
from persistence.engine import create_engine
from security.logs import configure_logging
from security.notify import DevelopmentNotifier
from security.notify_limits import RecipientLimitedNotifier
from security.rate_limit import InProcessRateLimiter
from sms_adapter.africastalking import AfricasTalkingSms
from sms_adapter.delivery_reports import DeliveryReports
from sms_adapter.simulator import DEFAULT_API_KEY, DEFAULT_USERNAME, SmsSimulator
from tests.mpesa_adapter.conftest import inbox_on

pytestmark = pytest.mark.integration
PHONE = "+254712345678"
SENT_AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def sim() -> AsyncIterator[SmsSimulator]:
    async with SmsSimulator() as simulator:
        yield simulator


def client(
    sim: SmsSimulator, *, api_key: str = DEFAULT_API_KEY, sender_id: str = "PENPAY"
) -> AfricasTalkingSms:
    return AfricasTalkingSms(
        username=DEFAULT_USERNAME, api_key=api_key, sender_id=sender_id, base_url=sim.base_url, timeout=5
    )


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging("DEBUG", stream)
    yield stream
    for handler in [h for h in root.handlers if h.get_name() == "penpay-json"]:
        root.removeHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


async def test_a_message_reaches_the_mailbox_with_africas_talkings_receipt(
    sim: SmsSimulator, captured: io.StringIO
) -> None:
    at = client(sim)
    try:
        receipt = await at.send(to=PHONE, body="Your PenPay verification code is 123456")
    finally:
        await at.aclose()
    assert receipt.status_code == 101 and receipt.status == "Success"
    assert receipt.message_id.startswith("ATXid_") and receipt.cost == "KES 0.8000"
    [sms] = sim.sent_to(PHONE)
    assert (sms.message_id, sms.sender, sms.body) == (
        receipt.message_id,
        "PENPAY",
        "Your PenPay verification code is 123456",
    )
    # The mailbox over HTTP, as the demo reads it.
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sim.base_url}/__control__/messages", params={"to": PHONE}) as r:
            assert [m["body"] for m in (await r.json())["messages"]] == [sms.body]
    # Logs name the masked phone and the message id, never the number or the body.
    logs = captured.getvalue()
    sent = [json.loads(line) for line in logs.splitlines() if '"sms.sent"' in line]
    assert sent and sent[0]["to"] == "254******678" and sent[0]["message_id"] == receipt.message_id
    assert "712345678" not in logs and "123456" not in logs


async def test_a_wrong_key_a_refused_recipient_and_no_answer_are_not_delivered(sim: SmsSimulator) -> None:
    wrong = client(sim, api_key="not-the-key")
    with pytest.raises(MessageNotDelivered) as unauthorised:
        await wrong.send_sms(to=PHONE, body="x")
    assert unauthorised.value.provider_status == "HTTP 401"
    assert unauthorised.value.message == "the SMS could not be sent; try again shortly"
    await wrong.aclose()

    at = client(sim)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sim.base_url}/__control__/refuse", json={"status_code": 405}) as r:
            assert r.status == 200
    with pytest.raises(MessageNotDelivered) as broke:
        await at.send_sms(to=PHONE, body="x")
    assert broke.value.provider_status == "InsufficientBalance"
    with pytest.raises(MessageNotDelivered) as invalid:
        await at.send_sms(to="0712345678", body="x")  # not E.164
    assert invalid.value.provider_status == "InvalidPhoneNumber"
    await at.aclose()
    assert sim.mailbox == []

    await sim.stop()
    gone = client(sim)
    with pytest.raises(MessageNotDelivered) as silent:
        await gone.send_sms(to=PHONE, body="x")
    assert silent.value.provider_status == "no answer"
    await gone.aclose()


async def test_each_recipient_gets_at_most_the_limit_per_window() -> None:
    now = [1000.0]
    sink = DevelopmentNotifier()
    limited = RecipientLimitedNotifier(
        sink, InProcessRateLimiter(clock=lambda: now[0]), limit=2, window_seconds=60
    )
    for _ in range(2):
        await limited.send_sms(to=PHONE, body="a")
    with pytest.raises(RateLimited):
        await limited.send_sms(to=PHONE, body="a")
    await limited.send_sms(to="+254722000111", body="b")  # another phone has its own budget
    await limited.send_email(to="a@example.co.ke", subject="s", body="b")  # and email its own
    now[0] += 61
    await limited.send_sms(to=PHONE, body="a")
    assert [m.to for m in sink.sent].count(PHONE) == 3


async def test_the_notifier_from_settings_sends_sms_through_africas_talking(sim: SmsSimulator) -> None:
    settings = Settings(
        app_env="testing",
        sms_at_username=DEFAULT_USERNAME,
        sms_at_api_key=DEFAULT_API_KEY,  # type: ignore[arg-type]
        sms_at_base_url=sim.base_url,
    )
    built = build_notifier(settings, InProcessRateLimiter(), clock=FixedClock(SENT_AT))
    try:
        await built.notifier.send_sms(to=PHONE, body="hello")
        await built.notifier.send_email(to="a@example.co.ke", subject="s", body="b")
    finally:
        await built.aclose()
    assert [m.body for m in sim.sent_to(PHONE)] == ["hello"]
    assert built.dev_sink is not None and [m.channel for m in built.dev_sink.sent] == ["email"]


@pytest.mark.unit
def test_production_names_the_first_missing_provider_setting() -> None:
    prod: dict[str, Any] = {"app_env": "production"}
    assert missing_provider(Settings(app_env="development")) is None
    assert str(missing_provider(Settings(**prod))).startswith("PENPAY_SMTP_HOST: expected")
    with_email = Settings(**prod, smtp_host="smtp.example.com")
    assert str(missing_provider(with_email)).startswith("PENPAY_SMS_AT_USERNAME: expected")
    with_user = Settings(**prod, smtp_host="smtp.example.com", sms_at_username="penpay")
    assert str(missing_provider(with_user)).startswith("PENPAY_SMS_AT_API_KEY: expected")
    ready = Settings(
        **prod, smtp_host="smtp.example.com", sms_at_username="penpay", sms_at_api_key=SecretStr("k")
    )
    assert missing_provider(ready) is None


def test_penpay_api_in_production_without_an_sms_provider_exits_2_naming_the_setting(
    tmp_path: object,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PENPAY_")}
    env.update({"PENPAY_APP_ENV": "production", "PENPAY_SMTP_HOST": "smtp.example.com"})
    done = subprocess.run(
        [sys.executable, "-m", "penpay", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("penpay: PENPAY_SMS_AT_USERNAME: expected")


def test_penpay_worker_notify_without_redis_exits_2_naming_the_setting(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PENPAY_")}
    env["PENPAY_APP_ENV"] = "development"
    done = subprocess.run(
        [sys.executable, "-m", "penpay", "worker", "notify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("penpay: PENPAY_REDIS_URL must be set for penpay worker notify")


async def test_delivery_reports_reach_penpay_callbacks_and_are_counted(
    sqlite_url: str, captured: io.StringIO
) -> None:
    token = secrets.token_urlsafe(24)
    engine = create_engine(sqlite_url)
    server = CallbackServer(
        CallbackServerConfig.from_strings(secrets.token_urlsafe(24), "127.0.0.1"),
        inbox_on(engine, FixedClock(SENT_AT)),
        extra_routes=DeliveryReports(token).routes(),
        clock=FixedClock(SENT_AT),
    )
    await server.start()
    before = REGISTRY.get_sample_value("penpay_sms_delivery_reports_total", {"status": "Success"}) or 0.0
    try:
        url = f"{server.base_url}/sms/delivery-reports/{token}"
        async with SmsSimulator(delivery_report_url=url) as sim:
            at = client(sim)
            receipt = await at.send(to=PHONE, body="hello")
            await at.aclose()
            for _ in range(200):  # the simulator reports asynchronously, as Africa's Talking does
                now = REGISTRY.get_sample_value("penpay_sms_delivery_reports_total", {"status": "Success"})
                if now == before + 1:
                    break
                await asyncio.sleep(0.02)
        assert (
            REGISTRY.get_sample_value("penpay_sms_delivery_reports_total", {"status": "Success"})
            == before + 1
        )
        reports = [
            json.loads(line) for line in captured.getvalue().splitlines() if "sms.delivery_report" in line
        ]
        assert (
            reports
            and reports[-1]["message_id"] == receipt.message_id
            and reports[-1]["to"] == "254******678"
        )

        async with aiohttp.ClientSession() as session:
            wrong = f"{server.base_url}/sms/delivery-reports/{'x' * 32}"
            async with session.post(wrong, data={"id": "ATXid_1", "status": "Success"}) as r:
                assert r.status == 404
            async with session.post(url, data={"id": "ATXid_1", "status": "Exploded"}) as r:
                assert r.status == 400
        assert token not in captured.getvalue()  # the access log hides the secret segment
    finally:
        await server.stop()
        await engine.dispose()

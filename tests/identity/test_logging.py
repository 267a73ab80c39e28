"""JSON logs with secrets redacted: by key name, by value pattern, and across a whole identity flow."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from application.identity.ports import VerificationPurpose
from security.logs import REDACTED, configure_logging, redact_secrets

from .conftest import PASSWORD, Identity, unique_email, unique_phone


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


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.unit
def test_the_redaction_processor_removes_secrets_by_key_and_by_value() -> None:
    event = redact_secrets(
        None,
        "info",
        {
            "event": f"calling with Bearer {JWT[:20]}abcdefgh and {JWT}",
            "password": "hunter2hunter2",
            "refresh_token": "r1",
            "verification_code": "123456",
            "code": "654321",
            "mpesa_pin": "1234",
            "SecurityCredential": "base64stuff==",
            "headers": {"Authorization": "Basic dXNlcjpwYXNz", "Content-Type": "application/json"},
            "request": {"authorize": "a1-token", "nested": [{"api_key": "k"}, "see " + JWT]},
            "error_code": "E42",
            "result_code": 0,
            "user_id": "u1",
        },
    )
    text = json.dumps(event)
    for secret in (
        "hunter2hunter2",
        'r1"',
        "123456",
        "654321",
        '1234"',
        "base64stuff",
        "dXNlcjpwYXNz",
        "a1-token",
        JWT,
        '"k"',
    ):
        assert secret not in text, secret
    assert event["error_code"] == "E42" and event["result_code"] == 0 and event["user_id"] == "u1"
    assert event["headers"]["Content-Type"] == "application/json" and event["password"] == REDACTED


@pytest.mark.integration
def test_a_checkout_request_id_keeps_no_subscriber_number() -> None:
    # Daraja's format: ws_CO_ + DDMMYYYYHHmmss + ms + the subscriber's number without 254.
    checkout = "ws_CO_061220261417360" + "90" + "787294948"
    event = redact_secrets(None, "info", {"event": f"stk_push accepted checkout_request_id={checkout}"})
    assert "787294948" not in event["event"] and "0787294948" not in event["event"]
    assert "checkout_request_id=ws_CO_06122026141736090******948" in event["event"]


@pytest.mark.integration
async def test_a_full_identity_flow_logs_no_secret(identity: Identity, captured: io.StringIO) -> None:
    email, phone = unique_email(), unique_phone()
    service = identity.service
    user_id = await service.register(email=email, phone=phone, password=PASSWORD, client_ip="10.2.2.2")
    await service.request_verification(user_id=user_id, purpose=VerificationPurpose.PHONE)
    code = identity.notifier.latest("sms", phone).body[-6:]
    await service.confirm_verification(user_id=user_id, purpose=VerificationPurpose.PHONE, code=code)
    session = await service.login(login=email, password=PASSWORD, device_id="device-log-1", device_name="Log")
    refreshed = await service.refresh(refresh_token=session.refresh_token)
    await service.bind_deriv_account(user_id=user_id, deriv_token="sim-client2-token")
    # even careless calls with secrets in them come out clean
    log = structlog.get_logger("careless")
    log.info(
        "debug dump",
        password=PASSWORD,
        token=refreshed.refresh_token,
        session=repr(session),
        headers={"Authorization": f"Bearer {refreshed.access_token}"},
    )
    logging.getLogger("stdlib.careless").warning("got %s", f"Bearer {refreshed.access_token}")

    output = captured.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert {
        "user.registered",
        "verification.sent",
        "verification.confirmed",
        "login.accepted",
        "session.refreshed",
        "deriv.bound",
        "debug dump",
    } <= {line["event"] for line in lines}
    secrets_used = [
        PASSWORD,
        code,
        session.refresh_token,
        session.access_token,
        refreshed.refresh_token,
        refreshed.access_token,
        "sim-client2-token",
    ]
    for secret in secrets_used:
        assert secret not in output


@pytest.mark.unit
def test_a_line_below_the_level_is_dropped_before_it_is_stamped_or_formatted() -> None:
    """Production runs at WARNING and a payment logs mostly INFO: those lines must cost no stamping,
    formatting or scrubbing (a value that cannot be formatted shows whether any ran)."""

    class Unformattable:
        def __str__(self) -> str:
            raise AssertionError("formatted although below the level")

    stream, root = io.StringIO(), logging.getLogger()
    level = root.level
    configure_logging("WARNING", stream)
    try:
        structlog.get_logger("penpay.test").info("value %s", Unformattable())
        structlog.get_logger("penpay.test").warning("kept %s", "this")
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "penpay-json"]:
            root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["kept this"]

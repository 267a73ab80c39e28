"""The log search finds each kind of leak it is meant to (so the DEBUG cluster test can fail), and
lets the redacted and masked forms through."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from security.logs import configure_logging, register_secret
from tests.demo.log_secrets import find_leaks

pytestmark = pytest.mark.unit

TOKEN = "a1-demo-deriv-token-0001"
PHONE = "+254712345678"
CODE = "493027"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"
TS = '"timestamp": "2026-12-06T07:15:46.493027Z"'  # microseconds equal to the code: not a leak


def search(*lines: str) -> list[str]:
    logs = {"api": "\n".join(lines)}
    leaks = find_leaks(logs, secrets={"a token": [TOKEN]}, codes=[CODE], phones=[PHONE])
    return [leak.kind for leak in leaks]


def test_each_planted_leak_is_found() -> None:
    assert search(f'{{"event": "bound", "note": "with {TOKEN}", {TS}}}') == ["a token"]
    assert search(f'{{"event": "sms to 254712345678", {TS}}}') == ["an unmasked phone number"]
    assert search('{"event": "call 0712345678"}') == ["an unmasked phone number"]
    assert search(f'{{"event": "verify", "detail": "code {CODE} ok", {TS}}}') == ["a verification code"]
    assert search(f'{{"event": "refresh", "x": "{JWT}"}}') == ["a JWT"]
    assert search('{"event": "GET /oauth", "h": "Bearer Zm9vYmFyYmF6cXV4"}') == ["a Bearer/Basic credential"]


def test_redacted_and_masked_forms_pass() -> None:
    assert search(f'{{"event": "sms to 2547*****678", "code": "[REDACTED]", {TS}}}') == []
    assert search('{"event": "authorize", "h": "Bearer [REDACTED]", "duration_ms": 4930.27}') == []


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


def test_the_shared_set_up_redacts_what_the_search_looks_for(captured: io.StringIO) -> None:
    register_secret(TOKEN)
    logging.getLogger("websockets.client").debug('> TEXT \'{"authorize": "%s"}\'', TOKEN)  # held at WARNING
    logging.getLogger("deriv_gateway.connection").info("sent %s for %s", TOKEN, PHONE)
    structlog.get_logger("penpay.test").info("verify", code=CODE, phone=PHONE, msisdn=254712345678, jwt=JWT)
    lines = captured.getvalue().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)
    assert search(*lines) == []
    assert "2547*****678" in lines[0]

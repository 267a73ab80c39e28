"""Production refuses to start on what only development may use (issues 21 and 16.4): plain-text
Daraja, callback and Deriv URLs, the sandbox's accounts, empty secrets, the development database.
One line names the setting; the process exits 2 without a traceback and touches nothing."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from penpay.production import Part, refuse_development_values
from penpay.settings import Settings, SettingsError

# A production configuration that passes every check: each test breaks one thing.
PRODUCTION: dict[str, Any] = {
    "app_env": "production",
    "database_url": "mysql+asyncmy://penpay:pw@127.0.0.1:1/penpay",  # port 1: never reached
    "deriv_ws_url": "wss://ws.derivws.com/websockets/v3",
    "deriv_app_id": "31337",
    "deriv_agent_token": "agent-token",
    "mpesa_base_url": "https://api.safaricom.co.ke",
    "mpesa_consumer_key": "ck",
    "mpesa_consumer_secret": "cs",
    "mpesa_passkey": "pk",
    "mpesa_shortcode": "4123456",
    "mpesa_b2c_shortcode": "3123456",
    "mpesa_initiator_name": "penpay-ops",
    "mpesa_pull_nominated_number": "254722000111",
    "mpesa_security_credential": "portal-generated",
    "mpesa_callback_base_url": "https://callbacks.penpay.example",
    "mpesa_callback_secret": "a-long-random-path-secret",
    "pii_keys": "k1:" + base64.b64encode(b"p" * 32).decode(),
    "smtp_host": "smtp.penpay.example",
    "sms_at_username": "penpay",
    "sms_at_api_key": "at-api-key",
}
ALL_PARTS = tuple(Part)


@pytest.mark.unit
def test_a_complete_production_configuration_starts() -> None:
    refuse_development_values(Settings(**PRODUCTION), *ALL_PARTS)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"mpesa_base_url": "http://api.safaricom.co.ke"}, "PENPAY_MPESA_BASE_URL: expected a https://"),
        (
            {"mpesa_callback_base_url": "http://cb.example"},
            "PENPAY_MPESA_CALLBACK_BASE_URL: expected a https://",
        ),
        ({"mpesa_callback_base_url": "callbacks.example"}, "PENPAY_MPESA_CALLBACK_BASE_URL"),
        ({"deriv_ws_url": "ws://ws.derivws.com/websockets/v3"}, "PENPAY_DERIV_WS_URL: expected a wss://"),
        ({"deriv_app_id": "1089"}, "PENPAY_DERIV_APP_ID"),
        ({"deriv_agent_token": ""}, "PENPAY_DERIV_AGENT_TOKEN"),
        ({"mpesa_shortcode": "174379"}, "PENPAY_MPESA_SHORTCODE: expected the organisation's own"),
        ({"mpesa_b2c_shortcode": "600992"}, "PENPAY_MPESA_B2C_SHORTCODE"),
        ({"mpesa_c2b_shortcode": "600000"}, "PENPAY_MPESA_C2B_SHORTCODE"),
        ({"mpesa_initiator_name": "testapi"}, "PENPAY_MPESA_INITIATOR_NAME"),
        ({"mpesa_pull_nominated_number": "254708374149"}, "PENPAY_MPESA_PULL_NOMINATED_NUMBER"),
        ({"mpesa_consumer_secret": ""}, "PENPAY_MPESA_CONSUMER_SECRET"),
        ({"mpesa_passkey": ""}, "PENPAY_MPESA_PASSKEY"),
        ({"mpesa_callback_secret": " "}, "PENPAY_MPESA_CALLBACK_SECRET"),
        ({"mpesa_security_credential": ""}, "PENPAY_MPESA_INITIATOR_PASSWORD"),
        ({"mpesa_security_credential": "", "mpesa_initiator_password": "pw"}, "PENPAY_MPESA_CERT_FILE"),
        ({"database_url": "sqlite+aiosqlite:///./penpay.db"}, "PENPAY_DATABASE_URL"),
        (
            {"deriv_rest_base_url": "http://api.derivws.com", "deriv_rest_app_id": "app1"},
            "PENPAY_DERIV_REST_BASE_URL: expected a https://",
        ),
        (
            {"deriv_rest_base_url": "https://api.derivws.com", "deriv_rest_app_id": "app1"},
            "PENPAY_DERIV_REST_AGENT_TOKEN",
        ),
        (
            {"deriv_rest_redirect_uri": "http://penpay.example/v1/deriv_account/oauth/callback"},
            "PENPAY_DERIV_REST_REDIRECT_URI: expected a https://",
        ),
        (
            {"deriv_rest_redirect_uri": "https://penpay.example/cb", "deriv_rest_oauth_url": "http://a.b"},
            "PENPAY_DERIV_REST_OAUTH_URL: expected a https://",
        ),
        ({"deriv_rest_redirect_uri": "https://penpay.example/cb"}, "PENPAY_DERIV_REST_APP_ID"),
    ],
)
def test_each_development_value_is_refused_naming_its_setting(change: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsError) as refused:
        refuse_development_values(Settings(**(PRODUCTION | change)), *ALL_PARTS)
    assert str(refused.value).startswith(named)
    assert len(str(refused.value).splitlines()) == 1


@pytest.mark.unit
def test_outside_production_the_development_defaults_are_fine() -> None:
    refuse_development_values(Settings(app_env="development"), *ALL_PARTS)
    refuse_development_values(Settings(app_env="testing"), *ALL_PARTS)


@pytest.mark.unit
def test_a_process_is_refused_only_what_it_uses() -> None:
    """The gateway (Deriv, database) does not need the Daraja app's secret."""
    settings = Settings(**(PRODUCTION | {"mpesa_consumer_secret": ""}))
    refuse_development_values(settings, Part.DERIV, Part.DATABASE)
    with pytest.raises(SettingsError, match="PENPAY_MPESA_CONSUMER_SECRET"):
        refuse_development_values(settings, Part.MPESA)


def _env_of(settings: dict[str, Any]) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PENPAY_") and k != "APP_ENV"}
    return inherited | {f"PENPAY_{k.upper()}": str(v) for k, v in settings.items()}


def _penpay(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "penpay", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.integration
def test_the_saga_worker_will_not_start_with_an_http_daraja_url(tmp_path: Path) -> None:
    """As an operator runs it, the URL given through `.env`: exit 2, one line, no traceback."""
    env = _env_of({k: v for k, v in PRODUCTION.items() if k != "mpesa_base_url"})
    (tmp_path / ".env").write_text("PENPAY_MPESA_BASE_URL=http://api.safaricom.co.ke\n")
    run = _penpay(["worker", "saga"], env, tmp_path)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        "penpay: PENPAY_MPESA_BASE_URL: expected a https:// URL in production (got a http URL)"
    ]
    assert "Traceback" not in run.stderr + run.stdout


@pytest.mark.integration
def test_the_gateway_will_not_start_with_a_plain_websocket_to_deriv(tmp_path: Path) -> None:
    env = _env_of(PRODUCTION)
    run = _penpay(["gateway", "--ws-url", "ws://ws.derivws.com/websockets/v3"], env, tmp_path)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        "penpay: PENPAY_DERIV_WS_URL: expected a wss:// URL in production (got a ws URL)"
    ]


@pytest.mark.integration
def test_the_api_will_not_start_on_a_throwaway_jwt_key_set_by_dot_env(tmp_path: Path) -> None:
    """The issue's case: production in `.env`, no JWT keys anywhere."""
    env = _env_of({k: v for k, v in PRODUCTION.items() if k != "app_env"})
    (tmp_path / ".env").write_text("PENPAY_APP_ENV=production\n")
    run = _penpay(["api", "--listen", "127.0.0.1:0"], env, tmp_path)
    assert run.returncode == 2, run.stderr
    [line] = run.stderr.strip().splitlines()
    assert line.startswith("penpay: PENPAY_JWT_PRIVATE_KEYS: expected kid:/path/key.pem")

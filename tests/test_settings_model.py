"""One settings model (issue 16.4): `.env.example` lists every setting with its default and nothing
else, a bad value is one line naming its variable, and `.env` reaches every setting the environment
does, the security keys included."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from dotenv import dotenv_values
from pydantic import SecretStr

from penpay import bootstrap
from penpay.settings import Settings, SettingsError, env_name, load_settings
from security.access_tokens import RsaAccessTokens
from security.config import MissingSecret

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / ".env.example"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No PENPAY_* (or APP_ENV) from the test run's environment, and a working directory of our own
    (Settings reads `.env` from it)."""
    for name in list(os.environ):
        if name.startswith("PENPAY_") or name == "APP_ENV":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_env_example_names_every_setting_and_nothing_else() -> None:
    listed = set(dotenv_values(EXAMPLE))
    fields = {env_name(name) for name in Settings.model_fields}
    assert listed - fields == set(), "listed in .env.example but not a setting"
    assert fields - listed == set(), "a setting missing from .env.example"


def test_env_example_gives_each_setting_its_default(clean_env: Path) -> None:
    from_example = Settings(_env_file=EXAMPLE)  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    differing = [
        env_name(name)
        for name in Settings.model_fields
        if _plain(getattr(from_example, name)) != _plain(getattr(defaults, name))
    ]
    assert differing == []


def _plain(value: object) -> object:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_a_bad_value_is_one_line_naming_the_variable_and_what_it_expects(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PENPAY_SMTP_PORT", "five-eight-seven")
    monkeypatch.setenv("PENPAY_MPESA_TRANSACTION_TYPE", "CustomerPayBill")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value).splitlines() == [
        "PENPAY_MPESA_TRANSACTION_TYPE: Input should be 'CustomerPayBillOnline' or 'CustomerBuyGoodsOnline'",
        "PENPAY_SMTP_PORT: Input should be a valid integer, unable to parse string as an integer",
    ]


def test_a_bad_secret_is_named_but_never_echoed(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENPAY_JWT_TTL_SECONDS", "s3cr3t-looking-value")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "PENPAY_JWT_TTL_SECONDS" in str(refused.value)
    assert "s3cr3t-looking-value" not in str(refused.value)


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"PENPAY_MPESA_TRANSACTION_TYPE": "CustomerBuyGoodsOnline"}, "PENPAY_MPESA_TILL_NUMBER"),
        ({"PENPAY_MPESA_TILL_NUMBER": "5566778"}, "PENPAY_MPESA_TRANSACTION_TYPE=CustomerBuyGoodsOnline"),
    ],
)
def test_a_till_goes_with_buy_goods_and_only_with_it(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], names: str
) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=names):
        load_settings()


def test_dot_env_reaches_the_security_settings_as_the_environment_does(clean_env: Path) -> None:
    """The issue's case: `.env` said production, security/ read only os.environ and started on the
    development PII key. Now the keys come from the same model, whichever source sets them."""
    key = base64.b64encode(b"k" * 32).decode()
    (clean_env / ".env").write_text(f"PENPAY_APP_ENV=production\nPENPAY_PII_KEYS=prod1:{key}\n")
    settings = load_settings()
    assert settings.app_env == "production"
    assert bootstrap.pii_cipher(settings).current_key_id == "prod1"

    (clean_env / ".env").write_text("PENPAY_APP_ENV=production\n")
    with pytest.raises(MissingSecret, match="PENPAY_PII_KEYS"):
        bootstrap.pii_cipher(load_settings())
    with pytest.raises(MissingSecret, match="PENPAY_JWT_PRIVATE_KEYS"):
        bootstrap.access_tokens(load_settings(), RsaAccessTokens)


def test_the_spec_s_app_env_is_honoured_and_penpay_app_env_wins(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_ENV", "testing")
    assert load_settings().app_env == "testing"
    monkeypatch.setenv("PENPAY_APP_ENV", "production")
    assert load_settings().app_env == "production"

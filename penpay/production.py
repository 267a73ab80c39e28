"""What a production process refuses to start with: development keys, sandbox values and plain-text URLs.

`PENPAY_APP_ENV=production` turns these checks on wherever settings become adapters (the composition
root asks for the parts it is about to wire), so each process refuses only what it would use: the
gateway is not refused for an SMTP password it never reads. The settings come from the environment or
`.env` alike (penpay.settings), so a development default is refused whichever source left it in place.
Each refusal is one line naming the setting and what production expects (SettingsError).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from enum import StrEnum
from urllib.parse import urlsplit

from penpay.settings import Settings, SettingsError

# Safaricom's sandbox accounts (daraja-protocol.md section 2) and Deriv's public demo app id.
SANDBOX_SHORTCODES = frozenset({"174379", "600000", "600992", "600997"})
SANDBOX_INITIATORS = frozenset({"testapi", "testapiuser"})
SANDBOX_MSISDN = "254708374149"  # the sandbox's test number, nominated for Pull Transactions there
DERIV_DEMO_APP_IDS = frozenset({"1089"})


class Part(StrEnum):
    """What a process wires from the settings."""

    DATABASE = "database"
    MPESA = "mpesa"  # the Daraja client: collection and disbursement
    CALLBACKS = "callbacks"  # the M-Pesa callback endpoints
    DERIV = "deriv"  # the Deriv gateway's agent connection (v3, and REST when configured)
    DERIV_OAUTH = "deriv_oauth"  # users binding new-API accounts by OAuth (penpay api), when offered
    NOTIFY = "notify"  # codes and payment notices: SMS (Africa's Talking) and email (SMTP)
    # The JWT and PII keys are refused where they are built (security/, MissingSecret).


def refuse_development_values(settings: Settings, *parts: Part) -> None:
    """In production, raise SettingsError for the first development value among `parts`."""
    if settings.app_env != "production":
        return
    for part in parts:
        for problem in _CHECKS[part](settings):
            raise SettingsError(problem)


def _scheme(name: str, url: str, allowed: tuple[str, ...]) -> Iterator[str]:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in allowed or not urlsplit(url).hostname:
        wanted = " or ".join(f"{s}://" for s in allowed)
        yield f"{name}: expected a {wanted} URL in production (got a {scheme or 'schemeless'} URL)"


def _secret(name: str, value: str, what: str) -> Iterator[str]:
    if not value.strip():
        yield f"{name}: expected {what}; production has no default"


def _database(s: Settings) -> Iterator[str]:
    if s.database_url == Settings.model_fields["database_url"].default:
        yield (
            "PENPAY_DATABASE_URL: expected the production database (mysql+asyncmy://...), "
            "not the development default"
        )


def _mpesa(s: Settings) -> Iterator[str]:
    # The consumer key, secret and bearer token go to the base URL; results come to the callback URL.
    yield from _scheme("PENPAY_MPESA_BASE_URL", s.mpesa_base_url, ("https",))
    yield from _scheme("PENPAY_MPESA_CALLBACK_BASE_URL", s.mpesa_callback_base_url, ("https",))
    yield from _secret(
        "PENPAY_MPESA_CONSUMER_KEY", s.mpesa_consumer_key.get_secret_value(), "the Daraja app's key"
    )
    yield from _secret(
        "PENPAY_MPESA_CONSUMER_SECRET", s.mpesa_consumer_secret.get_secret_value(), "the Daraja app's secret"
    )
    yield from _secret(
        "PENPAY_MPESA_PASSKEY", s.mpesa_passkey.get_secret_value(), "the Lipa na M-Pesa passkey"
    )
    yield from _secret(
        "PENPAY_MPESA_CALLBACK_SECRET",
        s.mpesa_callback_secret.get_secret_value(),
        "a long random path secret",
    )
    for name, code in (
        ("PENPAY_MPESA_SHORTCODE", s.mpesa_shortcode),
        ("PENPAY_MPESA_B2C_SHORTCODE", s.mpesa_b2c_shortcode),
        ("PENPAY_MPESA_C2B_SHORTCODE", s.mpesa_c2b_shortcode),
    ):
        if code in SANDBOX_SHORTCODES:
            yield f"{name}: expected the organisation's own shortcode, not the sandbox's {code}"
    if s.mpesa_initiator_name in SANDBOX_INITIATORS:
        yield (
            "PENPAY_MPESA_INITIATOR_NAME: expected the B2C API operator, "
            f"not the sandbox's {s.mpesa_initiator_name}"
        )
    if s.mpesa_pull_nominated_number.strip() in ("", SANDBOX_MSISDN):
        # Pull Transactions (reconciliation, and a push whose answer was lost) registers under it.
        yield (
            "PENPAY_MPESA_PULL_NOMINATED_NUMBER: expected the number nominated for PenPay's shortcodes, "
            "not the sandbox's"
        )
    if not s.mpesa_security_credential.get_secret_value():
        yield from _secret(
            "PENPAY_MPESA_INITIATOR_PASSWORD",
            s.mpesa_initiator_password.get_secret_value(),
            "the initiator password (or PENPAY_MPESA_SECURITY_CREDENTIAL)",
        )
        if not s.mpesa_cert_file:
            yield (
                "PENPAY_MPESA_CERT_FILE: expected the M-Pesa production certificate "
                "(or PENPAY_MPESA_SECURITY_CREDENTIAL)"
            )


def _callbacks(s: Settings) -> Iterator[str]:
    yield from _secret(
        "PENPAY_MPESA_CALLBACK_SECRET",
        s.mpesa_callback_secret.get_secret_value(),
        "a long random path secret",
    )


def _deriv(s: Settings) -> Iterator[str]:
    yield from _scheme("PENPAY_DERIV_WS_URL", s.deriv_ws_url, ("wss",))
    yield from _secret(
        "PENPAY_DERIV_AGENT_TOKEN", s.deriv_agent_token.get_secret_value(), "the payment agent's token"
    )
    if s.deriv_app_id in DERIV_DEMO_APP_IDS:
        yield (
            "PENPAY_DERIV_APP_ID: expected PenPay's registered app id, "
            f"not the public demo app {s.deriv_app_id}"
        )


def _deriv_rest(s: Settings) -> Iterator[str]:
    if not s.deriv_rest_base_url:
        return  # no REST transport: nothing of it is used
    # the agent's token goes there on every request
    yield from _scheme("PENPAY_DERIV_REST_BASE_URL", s.deriv_rest_base_url, ("https",))
    yield from _secret("PENPAY_DERIV_REST_APP_ID", s.deriv_rest_app_id, "the app id registered with Deriv")
    yield from _secret(
        "PENPAY_DERIV_REST_AGENT_TOKEN",
        s.deriv_rest_agent_token.get_secret_value(),
        "the payment agent's PAT or OAuth token",
    )


def _deriv_both(s: Settings) -> Iterator[str]:
    yield from _deriv(s)
    yield from _deriv_rest(s)


def _deriv_oauth(s: Settings) -> Iterator[str]:
    if not s.deriv_rest_redirect_uri:
        return  # no REST binding offered
    # codes come back to the redirect URL and are exchanged at the OAuth server: never in clear
    yield from _scheme("PENPAY_DERIV_REST_REDIRECT_URI", s.deriv_rest_redirect_uri, ("https",))
    yield from _scheme("PENPAY_DERIV_REST_OAUTH_URL", s.deriv_rest_oauth_url, ("https",))
    yield from _secret("PENPAY_DERIV_REST_APP_ID", s.deriv_rest_app_id, "the OAuth app's id (client_id)")


def _notify(s: Settings) -> Iterator[str]:
    # Every payment needs a verified phone: without an SMS provider nobody could pay.
    yield from _secret("PENPAY_SMTP_HOST", s.smtp_host, "the SMTP server that sends codes and notices")
    yield from _secret("PENPAY_SMS_AT_USERNAME", s.sms_at_username, "the Africa's Talking username")
    yield from _secret("PENPAY_SMS_AT_API_KEY", s.sms_at_api_key.get_secret_value(), "its API key")


_CHECKS: dict[Part, Callable[[Settings], Iterator[str]]] = {
    Part.DATABASE: _database,
    Part.MPESA: _mpesa,
    Part.CALLBACKS: _callbacks,
    Part.DERIV: _deriv_both,
    Part.DERIV_OAUTH: _deriv_oauth,
    Part.NOTIFY: _notify,
}

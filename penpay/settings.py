"""Every PenPay setting: environment variables with the prefix PENPAY_, or the same names in `.env`
(read from the working directory; a real environment variable wins). Read once by the entrypoints;
nothing else in PenPay reads the environment. `.env.example` lists every field with its default
(tests/test_settings_model.py holds the two together).

Blocks are grouped by what they configure, so additions (logging, proxies, SMS...) stay apart.
What production refuses (development keys, sandbox values, http URLs) is in penpay/production.py.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

StkTransactionType = Literal["CustomerPayBillOnline", "CustomerBuyGoodsOnline"]
C2BResponseType = Literal["Completed", "Cancelled"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PENPAY_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # APP_ENV is the spec's name (PEC 12: tests run with APP_ENV=testing); PENPAY_APP_ENV wins.
    app_env: Literal["development", "testing", "production"] = Field(
        default="development", validation_alias=AliasChoices("PENPAY_APP_ENV", "APP_ENV")
    )

    # Persistence: SQLite is the embedded default; MariaDB looks like
    # mysql+asyncmy://user:pass@127.0.0.1:3306/penpay (mysql+aiomysql:// works too, with more CPU)
    database_url: str = "sqlite+aiosqlite:///./penpay.db"
    # No Redis URL means the in-process bus and in-process rate limiting.
    redis_url: str | None = None

    grpc_addr: str = "127.0.0.1:50051"
    http_addr: str = "127.0.0.1:8080"
    # The gateway listens here; clients may list the leader and its standbys, comma-separated,
    # and follow whichever holds the lease (deriv_gateway/channel.py).
    gateway_addr: str = "127.0.0.1:50052"
    metrics_addr: str = "127.0.0.1:9100"

    # Deriv
    deriv_ws_url: str = "ws://127.0.0.1:8765/websockets/v3"
    deriv_app_id: str = "1089"
    deriv_agent_token: SecretStr = SecretStr("")
    # Deriv's REST Payment-Agent API, for new-API accounts (empty base URL: no REST transport)
    deriv_rest_base_url: str = ""
    deriv_rest_app_id: str = ""
    deriv_rest_agent_token: SecretStr = SecretStr("")
    deriv_rest_per_minute: int = Field(default=60, ge=1)
    # Users bind new-API accounts by OAuth2 (client_id = deriv_rest_app_id): Deriv's OAuth server and
    # the bridge's redirect route as registered with the app (empty: no REST binding offered).
    deriv_rest_oauth_url: str = "https://auth.deriv.com"
    deriv_rest_redirect_uri: str = ""
    # The payment agent's per-transfer limits in USD (Deriv's default for a fiat agent: 10 to 2,000).
    # A payment outside them is refused when it starts, before the customer pays or asks for a code.
    deriv_transfer_min_usd: Decimal = Field(default=Decimal("10"), gt=0, decimal_places=2)
    deriv_transfer_max_usd: Decimal = Field(default=Decimal("2000"), gt=0, decimal_places=2)

    # Deriv gateway: leader lease (Redis SET NX PX with a fencing token) and call timeouts
    gateway_lease_key: str = "penpay:deriv-gateway:leader"
    gateway_lease_ttl: float = 5.0
    gateway_lease_retry: float = 0.5
    gateway_request_timeout: float = 20.0
    # How old a journal row in SENDING must be before "not in the statement" means "never executed".
    gateway_unknown_settle: float = 30.0

    # M-Pesa (Daraja). Defaults are Safaricom's sandbox and the simulator; production refuses them.
    # https in production (the consumer key, secret and access token travel to the base URL).
    mpesa_base_url: str = "http://127.0.0.1:8766"
    mpesa_consumer_key: SecretStr = SecretStr("")
    mpesa_consumer_secret: SecretStr = SecretStr("")
    mpesa_cert_file: str | None = None
    # https in production: Safaricom posts the payment results (CallBackURL, ResultURL) here.
    mpesa_callback_base_url: str = "http://127.0.0.1:8767"
    mpesa_callback_secret: SecretStr = SecretStr("")
    mpesa_allowed_ips: str = "127.0.0.1"

    # M-Pesa collection (STK Push, STK Query): BusinessShortCode is the paybill, or for a till the
    # head-office/store number; the passkey belongs to it. TransactionType CustomerPayBillOnline sends
    # PartyB = the paybill; CustomerBuyGoodsOnline sends PartyB = the till number (required then).
    mpesa_shortcode: str = "174379"
    mpesa_passkey: SecretStr = SecretStr("")
    mpesa_transaction_type: StkTransactionType = "CustomerPayBillOnline"
    mpesa_till_number: str | None = None
    # Paybill (C2B) deposits: the paybill customers pay with their deposit reference as the account
    # number (empty: PENPAY_MPESA_SHORTCODE), and Register URL's ResponseType: what M-Pesa does when
    # PenPay's ValidationURL cannot answer (Cancelled: the payment is refused; Completed: it is taken
    # and, unvalidated, held in suspense for a person).
    mpesa_c2b_shortcode: str | None = None
    mpesa_c2b_response_type: C2BResponseType = "Cancelled"

    # M-Pesa disbursement (B2C, Transaction Status, Account Balance): PartyA is the B2C shortcode, a
    # different account from the collection paybill; its API operator (initiator) signs with the
    # SecurityCredential: given as the portal generates it, or made from the initiator password and
    # the certificate (PENPAY_MPESA_CERT_FILE).
    mpesa_b2c_shortcode: str = "600992"
    mpesa_initiator_name: str = "testapi"
    mpesa_initiator_password: SecretStr = SecretStr("")
    mpesa_security_credential: SecretStr = SecretStr("")

    # Payment sagas: the quote PenPay honours, timeouts (seconds) and bounds of the workers
    fx_kes_per_usd_buy: str = "130.00"  # a deposit: KES the user pays per USD credited
    fx_kes_per_usd_sell: str = "128.00"  # a withdrawal: KES paid out per USD withdrawn
    fx_quote_ttl: float = 120.0
    saga_call_grace: float = 30.0  # a call started less than this ago is still in flight
    saga_stk_callback_wait: float = 60.0  # no STK callback by then: STK Query
    saga_b2c_result_wait: float = 60.0  # no B2C result by then: Transaction Status
    saga_query_interval: float = 15.0
    saga_max_attempts: int = 5
    sweeper_interval: float = 5.0
    sweeper_min_age: float = 5.0
    # A transaction saved without the saga's word (its event wakes the saga) is swept after this
    sweeper_event_grace: float = 10.0
    float_low_usd_cents: int = 100_000  # FloatLow below this Deriv agent balance
    float_low_kes_cents: int = 5_000_000  # FloatLow below this M-Pesa float
    # The continuous auditor (`penpay worker audit`): how often it runs (seconds), how long a
    # transaction may stay in one non-terminal status, how far a float may differ from the provider's
    # balance (in-flight payments explain small differences) and how long verdicts are kept (days).
    audit_interval: float = Field(default=60.0, gt=0)
    audit_stale_after: float = Field(default=900.0, gt=0)
    audit_float_tolerance_usd_cents: int = Field(default=10_000, ge=0)
    audit_float_tolerance_kes_cents: int = Field(default=1_000_000, ge=0)
    audit_verdict_retention_days: int = Field(default=7, ge=1)
    # Who chains audit records (committed with their action in audit_pending) into audit_logs:
    # "background": only the sealer of `penpay worker audit` (or the embedded stack), every
    # audit_seal_interval seconds, in large batches; no other process seals or waits for a seal.
    # "inline": each process right after its commits (one-shot tools, tests without the daemon).
    audit_sealer: Literal["background", "inline"] = "inline"
    audit_seal_interval: float = Field(default=0.5, gt=0)
    # Reconciliation against the providers (penpay reconcile run, penpay worker reconcile), seconds
    reconcile_interval: float = 300.0  # between the worker's runs
    reconcile_lag: float = 120.0  # a run ends this long before now: records still settling wait
    reconcile_b2c_grace: float = 1800.0  # a payout still unconfirmed after this is missing at M-Pesa
    reconcile_balance_wait: float = 30.0  # the longest wait for Account Balance's result callback
    # Pull Transactions registration: the Safaricom number nominated for the shortcode
    mpesa_pull_nominated_number: str = "254708374149"
    # A deposit whose STK push's answer was lost is failed in review only this long (seconds) after
    # it went to review: until then the customer may still pay and M-Pesa's list may still lag.
    review_lost_push_wait: float = Field(default=600.0, ge=0)
    # Fault injection for crash tests and chaos runs: kill -9 this process at a named saga
    # checkpoint (see application/payments/saga.py). Refused when app_env is production.
    crash_at: str | None = None

    # Security (security/): access tokens, password hashing, PII encryption at rest.
    # JWT signing keys, "kid:/path/key.pem,kid2:/path/older.pem" (PEM RSA >= 2048 bits, first signs).
    # Empty: outside production a throwaway key per process; production refuses to start.
    jwt_private_keys: SecretStr = SecretStr("")
    jwt_issuer: str = "penpay"
    jwt_audience: str = "penpay-api"
    jwt_ttl_seconds: int = Field(default=600, gt=0, le=900)  # at most 15 minutes
    # AES-256-GCM keys, "kid:base64key,kid2:base64key" (first encrypts). Empty: outside production a
    # fixed development key; production refuses to start. `python -c "from security.pii import
    # PiiCipher; print(PiiCipher.generate_key())"` makes one.
    pii_keys: SecretStr = SecretStr("")
    # Argon2id (RFC 9106 second recommendation); production refuses less than OWASP's minimum.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=64 * 1024, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    argon2_max_concurrency: int = Field(default=2, ge=1)  # hashes at once (2 threads)

    # Email for verification codes in production (outside production a development notifier
    # keeps messages in memory, readable through the dev-only DevService). Empty host: not configured.
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_sender: str = "no-reply@penpay.io"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = True

    # --- Notifications: SMS by Africa's Talking (email is SMTP, above) ----------------------
    # Production refuses to start without an SMS and an email provider (penpay/notifiers.py).
    # Outside production an unset provider is the development sink; `penpay up` points SMS at the
    # simulator (`penpay sim sms`). Sandbox: https://api.sandbox.africastalking.com, username "sandbox".
    sms_at_username: str = ""
    sms_at_api_key: SecretStr = SecretStr("")
    sms_at_sender_id: str = ""  # registered sender id or short code; empty: Africa's Talking's default
    sms_at_base_url: str = "https://api.africastalking.com"
    sms_timeout: float = Field(default=10.0, gt=0)
    # Secret path token of the delivery-report URL served by `penpay callbacks`
    # (<PENPAY_MPESA_CALLBACK_BASE_URL>/sms/delivery-reports/<token>); empty: not served.
    sms_at_delivery_report_token: SecretStr = SecretStr("")
    # Per recipient and channel, at most this many messages per window (seconds): codes and notices.
    notify_recipient_limit: int = Field(default=30, ge=1)
    notify_recipient_window: int = Field(default=3600, ge=1)

    # Prefix of the rate limiters' Redis keys: stacks sharing one Redis (a staging and a test stack,
    # parallel test clusters) keep their own counters.
    rate_limit_prefix: str = "penpay:"

    # --- Edge: logging, proxies, browsers (one meaning in every process) ---------------------------
    # Level of every process's JSON logs; a command's --log-level overrides it. Secrets are redacted
    # at any level (security/logs.py).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # The event loop every `penpay` process runs on (penpay/event_loop.py): uvloop (libuv, compiled;
    # less CPU per deposit than the standard library's pure-Python loop, bench/README.md) or asyncio,
    # the standard library's. Where uvloop is not installed (Windows) the standard one is used.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Reverse proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For is believed,
    # by the HTTP bridge, the gRPC API's per-IP rate limits and the M-Pesa callback allow-list alike:
    # the chain is walked from the right and the first hop not in this list is the client. Put here
    # every hop between a client and the process: the load balancer, and the bridge for the API.
    # PENPAY_API_TRUSTED_PROXIES is its deprecated former name (read when this one is unset).
    trusted_proxies: str = Field(
        default="127.0.0.1,::1",
        validation_alias=AliasChoices("PENPAY_TRUSTED_PROXIES", "PENPAY_API_TRUSTED_PROXIES"),
    )
    # Browser origins other than the bridge's own allowed to call it with credentials (CORS),
    # comma-separated exact origins ("https://app.example.co.ke"). Empty: same-origin only.
    cors_allowed_origins: str = ""
    # The HTTP bridge's login and refresh answers carry the tokens in HttpOnly cookies only (PEC §13).
    # True lets a non-browser client that sends `X-PenPay-Token-Delivery: body` (and no session
    # cookie) get them in the JSON body instead. Off: browsers' scripts never see a token.
    http_tokens_in_body: bool = False

    @field_validator(
        "redis_url", "mpesa_cert_file", "mpesa_till_number", "mpesa_c2b_shortcode", "crash_at", mode="before"
    )
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        # `PENPAY_REDIS_URL=` (as in .env.example) means "not configured", not "".
        return None if value == "" else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        from security.proxies import parse_networks

        parse_networks(value)  # "not an IP address or network: 'x'" at start-up, not at the first request
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        from security.origins import parse_origins

        parse_origins(value)
        return value

    @field_validator("deriv_transfer_min_usd", "deriv_transfer_max_usd", mode="before")
    @classmethod
    def _exact_amount(cls, value: object) -> object:
        # Money is exact: 9.99 as a float is 9.9900000000000002131628...
        if isinstance(value, float):
            raise ValueError("give the amount as a decimal string, never a float")
        return value

    @model_validator(mode="after")
    def _transfer_limits_in_order(self) -> Self:
        if self.deriv_transfer_min_usd > self.deriv_transfer_max_usd:
            raise ValueError("PENPAY_DERIV_TRANSFER_MIN_USD is above PENPAY_DERIV_TRANSFER_MAX_USD")
        return self

    @model_validator(mode="after")
    def _till_with_buy_goods(self) -> Self:
        # PartyB is the till for CustomerBuyGoodsOnline and the paybill otherwise: a till without
        # BuyGoods (or BuyGoods without a till) would send a PartyB Daraja refuses (2028).
        buy_goods = self.mpesa_transaction_type == "CustomerBuyGoodsOnline"
        if buy_goods and not self.mpesa_till_number:
            raise ValueError(
                "PENPAY_MPESA_TILL_NUMBER: expected the till number (PartyB) with "
                "PENPAY_MPESA_TRANSACTION_TYPE=CustomerBuyGoodsOnline"
            )
        if self.mpesa_till_number and not buy_goods:
            raise ValueError(
                "PENPAY_MPESA_TILL_NUMBER is set: expected "
                "PENPAY_MPESA_TRANSACTION_TYPE=CustomerBuyGoodsOnline"
            )
        return self


class SettingsError(ValueError):
    """A setting PenPay cannot start with; the message is one line naming it and what is expected."""


def env_name(field: str) -> str:
    name = field.upper()
    return name if name.startswith("PENPAY_") else f"PENPAY_{name}"


def describe(error: ValidationError) -> list[str]:
    """One line per bad setting: its variable and what it expects (never its value: it may be a secret)."""
    lines = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        field = str(item["loc"][0]) if item["loc"] else ""
        lines.append(f"{env_name(field)}: {message}" if field else message)
    return lines


def load_settings() -> Settings:
    """Settings from the environment and `.env`; SettingsError (one line per bad variable) otherwise."""
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError("\n".join(describe(error))) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()

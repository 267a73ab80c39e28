"""Plain configuration for the Daraja client and the callback endpoints.

The composition root maps `penpay.settings.Settings` (PENPAY_MPESA_*) onto these dataclasses; nothing in
`mpesa_adapter` reads the environment. Secrets are `repr=False`, so a logged config shows none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from security.proxies import IpNetwork, parse_networks

__all__ = ["SAFARICOM_CALLBACK_IPS", "CallbackServerConfig", "DarajaConfig", "IpNetwork", "parse_networks"]


# Commonly published Safaricom callback source addresses (daraja-protocol.md 10.2 item 5). Unverified:
# the list is configurable and the allow-list can run in "log only" mode until it is.
SAFARICOM_CALLBACK_IPS = (
    "196.201.214.200, 196.201.214.206, 196.201.213.114, 196.201.214.207, 196.201.214.208, "
    "196.201.213.44, 196.201.212.127, 196.201.212.138, 196.201.212.129, 196.201.212.136, "
    "196.201.212.74, 196.201.212.69"
)


@dataclass(frozen=True)
class DarajaConfig:
    base_url: str
    consumer_key: str = field(repr=False)
    consumer_secret: str = field(repr=False)
    shortcode: str
    passkey: str = field(repr=False)
    initiator_name: str
    initiator_password: str = field(repr=False)
    # PEM text of the M-Pesa public-key certificate, or a path to it (cert_file wins when both are set).
    cert_file: str | None = None
    cert_pem: bytes | None = field(default=None, repr=False)
    callback_base_url: str = "http://127.0.0.1:8767"
    callback_secret: str = field(default="", repr=False)
    # A SecurityCredential as the Daraja portal generates it; when set, used instead of encrypting
    # initiator_password with the certificate.
    security_credential: str = field(default="", repr=False)
    # B2C / Transaction Status / Account Balance PartyA; defaults to `shortcode`. (The sandbox uses a
    # different one, 600xxx, from the STK paybill 174379.)
    b2c_shortcode: str | None = None
    # CustomerPayBillOnline (paybill) or CustomerBuyGoodsOnline (till: then set till_number as PartyB).
    transaction_type: str = "CustomerPayBillOnline"
    till_number: str | None = None
    # C2B (paybill deposits): the paybill customers pay with their deposit reference as the account
    # number (defaults to `shortcode`), and what M-Pesa does when our ValidationURL cannot answer:
    # "Cancelled" refuses the payment, "Completed" takes it (it then lands in suspense for a person).
    c2b_shortcode: str | None = None
    c2b_response_type: str = "Cancelled"
    # Timeouts and retries.
    request_timeout: float = 30.0
    connect_timeout: float = 5.0
    token_refresh_margin: float = 120.0
    # With Redis (shared_token.py): a refresh lock left by a dead process blocks the others this long at
    # most, and a process trusts its copy of the shared token this long before reading Redis again.
    token_lock_ttl: float = 10.0
    token_local_ttl: float = 5.0
    query_attempts: int = 4
    token_attempts: int = 3
    retry_initial_wait: float = 0.2
    retry_max_wait: float = 5.0

    @property
    def b2c_party(self) -> str:
        return self.b2c_shortcode or self.shortcode

    @property
    def c2b_party(self) -> str:
        return self.c2b_shortcode or self.shortcode

    @property
    def token_fetch_budget(self) -> float:
        """The longest a token fetch can take: every attempt timing out, with the backoff between them."""
        return self.token_attempts * (self.request_timeout + self.retry_max_wait)

    def certificate_pem(self) -> bytes:
        if self.cert_file:
            with open(self.cert_file, "rb") as fh:
                return fh.read()
        if self.cert_pem:
            return self.cert_pem
        raise ValueError("no M-Pesa certificate configured (PENPAY_MPESA_CERT_FILE)")


@dataclass(frozen=True)
class CallbackServerConfig:
    secret: str = field(repr=False)
    # Source addresses Safaricom calls from. Empty: no allow-list (every address passes).
    allowed_ips: tuple[IpNetwork, ...] = ()
    # Reverse proxies whose X-Forwarded-For is believed. A header from anyone else is ignored.
    trusted_proxies: tuple[IpNetwork, ...] = ()
    # True: a caller outside the allow-list gets 403 and the request is recorded for review.
    # False: it is recorded and logged, then processed (until the published IP list is verified).
    enforce_allowlist: bool = True
    max_body_bytes: int = 64 * 1024

    @classmethod
    def from_strings(
        cls,
        secret: str,
        allowed_ips: str = "",
        trusted_proxies: str = "",
        *,
        enforce_allowlist: bool = True,
        max_body_bytes: int = 64 * 1024,
    ) -> CallbackServerConfig:
        return cls(
            secret=secret,
            allowed_ips=parse_networks(allowed_ips),
            trusted_proxies=parse_networks(trusted_proxies),
            enforce_allowlist=enforce_allowlist,
            max_body_bytes=max_body_bytes,
        )

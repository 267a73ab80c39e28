"""What the gateway accepts in a request, checked before anything is journaled or sent to Deriv.

The patterns are Deriv's own (deriv-api-schemas, send.json), matched against the whole string (with
`re.match`, a `$` also accepts a final newline: "CR1\\n" passed) and in ASCII (Deriv's `\\w` is ASCII;
Python's would let any Unicode letter through). Lengths are what PenPay stores: 64 for an operation id,
32 for a loginid (DerivLoginId), 3 for a currency (ISO 4217, the journal's amount_currency).
"""

from __future__ import annotations

import re

from domain.shared.errors import DomainError
from domain.wallet.deriv_rules import DerivTransferLimits
from domain.wallet.money import Currency, Money

OPERATION_ID = re.compile(r"[0-9A-Za-z-]{1,64}")
LOGINID = re.compile(r"[A-Za-z]+[0-9]+")
LOGINID_MAX = 32
CURRENCY = re.compile(r"[A-Z]{3}")
CLIENT_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")  # authorize: ^[\w\-]{1,128}$
VERIFICATION_CODE = re.compile(r"[A-Za-z0-9_]{8,128}")  # paymentagent_withdraw: ^\w{8,128}$
# Up to 15 significant digits a JSON number (a double) carries an amount exactly; far above any
# payment agent's limit (2,000 USD per transfer by default).
MAX_AMOUNT_MINOR = 10**15 - 1


class InvalidRequest(ValueError):
    """The gRPC request itself is malformed (field -> reason)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def check_operation_id(field: str, value: str) -> None:
    if not OPERATION_ID.fullmatch(value):
        raise InvalidRequest(field, "must match ^[0-9A-Za-z-]{1,64}$")


def check_loginid(field: str, value: str) -> None:
    if len(value) > LOGINID_MAX or not LOGINID.fullmatch(value):
        raise InvalidRequest(field, f"must match ^[A-Za-z]+[0-9]+$, at most {LOGINID_MAX} characters")


def check_amount(amount_cents: int, currency: str) -> None:
    if not 0 < amount_cents <= MAX_AMOUNT_MINOR:
        raise InvalidRequest("amount.amount_cents", f"must be 1 to {MAX_AMOUNT_MINOR}")
    if not CURRENCY.fullmatch(currency):
        raise InvalidRequest("amount.currency", "must be a three-letter code such as USD")


def check_agent_currency(currency: str, agent_currency: str | None) -> None:
    """Deriv moves money between a payment agent and a client only in the agent's account currency."""
    if agent_currency and currency != agent_currency:
        raise InvalidRequest("amount.currency", f"must be the agent account's currency, {agent_currency}")


def check_agent_limits(amount_cents: int, currency: str, minimum_cents: int, maximum_cents: int) -> None:
    """Deriv refuses a payment agent transfer or withdrawal outside the agent's USD range: refused here,
    before a journal row or a frame, with the rule and message of domain/wallet/deriv_rules.py."""
    if currency != Currency.USD.value:
        return  # the limits are USD; another currency is refused as not the agent's (check_agent_currency)
    if minimum_cents <= amount_cents <= maximum_cents:
        return  # the usual case, on every transfer: no Money objects
    try:
        limits = DerivTransferLimits(Money(minimum_cents, Currency.USD), Money(maximum_cents, Currency.USD))
        limits.check(Money(amount_cents, Currency.USD), what="payment agent transfers")
    except DomainError as exc:
        raise InvalidRequest("amount.amount_cents", str(exc)) from None


def check_not_the_agent(field: str, loginid: str, agent_loginid: str | None) -> None:
    """Deriv refuses money moved between the agent's account and itself: refused before any frame."""
    if agent_loginid and loginid.upper() == agent_loginid.upper():
        raise InvalidRequest(field, "must not be the payment agent's own account")


def check_client_token(value: str) -> None:
    if not value:
        raise InvalidRequest("client_token", "required")
    if not CLIENT_TOKEN.fullmatch(value):
        raise InvalidRequest("client_token", "must match ^[A-Za-z0-9_-]{1,128}$")


def check_verification_code(value: str) -> None:
    if not value:
        raise InvalidRequest("verification_code", "required")
    if not VERIFICATION_CODE.fullmatch(value):
        raise InvalidRequest("verification_code", "must match ^[A-Za-z0-9_]{8,128}$")

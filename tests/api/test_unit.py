"""Pure pieces of the API layer: the proto surface, access policy, client IPs, conversions."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from google.api import annotations_pb2

from application.wallet.queries import EntryCursor
from domain.shared.errors import InvalidValue
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency
from penpay.auth.v1 import auth_pb2
from penpay.dev.v1 import dev_pb2
from penpay.ops.v1 import ops_pb2
from penpay.payments.v1 import payments_pb2
from penpay.wallet.v1 import wallet_pb2
from penpay_api.auth import Access, AccessPolicy, RoleAwareAccessTokens
from penpay_api.context import client_ip_from, peer_ip
from penpay_api.services.payments import kes_per_usd_text, rate_text

from .conftest import SIGNING_KEY

pytestmark = pytest.mark.unit

MODULES = (auth_pb2, payments_pb2, wallet_pb2, ops_pb2, dev_pb2)
SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def test_every_rpc_has_an_http_rule_and_snake_case_fields() -> None:
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rule = method.GetOptions().Extensions[annotations_pb2.http]
                assert rule.WhichOneof("pattern"), f"{method.full_name} has no google.api.http rule"
                for message in (method.input_type, method.output_type):
                    for f in message.fields:
                        assert SNAKE.fullmatch(f.name), f"{message.full_name}.{f.name}"


def test_pec_names_are_used_for_money_and_ids() -> None:
    names = {
        f.name
        for module in MODULES
        for message in module.DESCRIPTOR.message_types_by_name.values()
        for f in message.fields
    }
    assert {"amount_cents", "currency", "deriv_login_id"} <= names
    assert not names & {"amountCents", "deriv_user_id", "derivLoginId", "amount_in_cents", "idempotencyKey"}


def test_no_user_facing_request_carries_a_user_id() -> None:
    """The user id comes from the access token only, never from a request field."""
    for module in (auth_pb2, payments_pb2, wallet_pb2, dev_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert "user_id" not in {f.name for f in method.input_type.fields}, method.full_name


def test_access_policy() -> None:
    policy = AccessPolicy(
        public_methods=["/p.A/Login"], public_services=["grpc.health.v1.Health"], operator_services=["p.Ops"]
    )
    assert policy.access("/p.A/Login") is Access.PUBLIC
    assert policy.access("/grpc.health.v1.Health/Check") is Access.PUBLIC
    assert policy.access("/p.Ops/GetOutboxStats") is Access.OPERATOR
    assert policy.access("/p.A/ListDevices") is Access.USER
    assert policy.access("/p.Unknown/Anything") is Access.USER  # not listed: needs a user


def test_client_ip_believes_forwarded_for_only_from_a_trusted_proxy() -> None:
    md = [("x-forwarded-for", "203.0.113.9, 10.0.0.1")]
    assert peer_ip("ipv4:127.0.0.1:5555") == "127.0.0.1" and peer_ip("ipv6:[::1]:5555") == "::1"
    # walked from the right: 10.0.0.1 is the first hop the API does not trust; 203.0.113.9 is
    # only what 10.0.0.1 was told, and believed only when 10.0.0.1 is itself a trusted proxy
    assert client_ip_from("ipv4:127.0.0.1:5555", md, {"127.0.0.1"}) == "10.0.0.1"
    assert client_ip_from("ipv4:127.0.0.1:5555", md, {"127.0.0.1", "10.0.0.0/8"}) == "203.0.113.9"
    assert client_ip_from("ipv4:198.51.100.7:5555", md, {"127.0.0.1"}) == "198.51.100.7"
    assert client_ip_from("ipv4:127.0.0.1:5555", [("x-forwarded-for", "junk")], {"127.0.0.1"}) == "127.0.0.1"
    assert client_ip_from("unix:/tmp/s", md, {"127.0.0.1"}) is None


def test_operator_tokens() -> None:
    tokens = RoleAwareAccessTokens([SIGNING_KEY])
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # tokens are issued and verified as of this instant
    with pytest.raises(ValueError):
        tokens.issue_operator_token(operator="Robert'); DROP", now=now)
    token, _ = tokens.issue_operator_token(operator=f"op-{secrets.token_hex(2)}", now=now)
    principal = tokens.verify_principal(token, now=now)
    assert principal.roles == {"operator"} and principal.user_id is None
    user_token, _ = tokens.issue(user_id=str(uuid.uuid4()), device_id="d", session_id="s", now=now)
    user = tokens.verify_principal(user_token, now=now)
    assert user.roles == frozenset() and user.user_id is not None


def test_rates_are_exact() -> None:
    assert rate_text(Fraction(13001, 100)) == "130.01"
    assert rate_text(Fraction(1, 8)) == "0.125"
    assert rate_text(Fraction(128)) == "128"
    assert rate_text(Fraction(1, 130)) == "1/130"  # no finite decimal: the exact fraction


def test_the_locked_rate_is_also_shown_as_the_price_of_a_dollar_in_shillings_both_ways() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)

    def locked(base: Currency, quote: Currency, rate: Fraction) -> LockedRate:
        return LockedRate(
            quote_id="q-1",
            base=base,
            quote=quote,
            rate=rate,
            locked_at=now,
            expires_at=now + timedelta(minutes=5),
        )

    assert kes_per_usd_text(locked(Currency.KES, Currency.USD, Fraction(2, 259))) == "129.5"  # a deposit
    assert kes_per_usd_text(locked(Currency.USD, Currency.KES, Fraction(128))) == "128"  # a withdrawal
    assert kes_per_usd_text(None) == ""


def test_entry_cursor_round_trip_and_refusal() -> None:
    cursor = EntryCursor(datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), uuid.uuid4())
    assert EntryCursor.decode(cursor.encode()) == cursor
    with pytest.raises(InvalidValue) as bad:
        EntryCursor.decode("bm90IGEgY3Vyc29y")
    assert bad.value.field == "page_token"

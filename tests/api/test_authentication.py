"""Authentication (RS256 access tokens) and authorisation (own data only; operators for Ops)."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from penpay.auth.v1 import auth_pb2
from penpay.dev.v1 import dev_pb2
from penpay.ops.v1 import ops_pb2
from penpay.wallet.v1 import wallet_pb2
from penpay_api.auth import RoleAwareAccessTokens
from security.access_tokens import SigningKey

from .conftest import SIGNING_KEY, Harness, bearer, details_of
from .ledger import fund_wallet

pytestmark = pytest.mark.integration


async def _refused(call: object, request: object, metadata: object = None) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(request, metadata=metadata)  # type: ignore[operator]
    return refused.value


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_a_call_without_a_token_is_unauthenticated(api: Harness) -> None:
    for call, request in (
        (api.wallet.GetBalances, wallet_pb2.GetBalancesRequest()),
        (api.auth.ListDevices, auth_pb2.ListDevicesRequest()),
        (api.ops.GetOutboxStats, ops_pb2.GetOutboxStatsRequest()),
    ):
        error = await _refused(call, request)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert details_of(error).error_info.reason == "UNAUTHENTICATED"


async def test_a_malformed_authorization_header_is_unauthenticated(api: Harness) -> None:
    account = await api.new_account()
    for header in (f"Token {account.access_token}", "Bearer ", "Bearer not.a.jwt"):
        error = await _refused(
            api.wallet.GetBalances, wallet_pb2.GetBalancesRequest(), (("authorization", header),)
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, header


async def test_an_expired_token_is_unauthenticated(api: Harness) -> None:
    account = await api.new_account()
    api.clock.advance(timedelta(minutes=16))
    error = await _refused(api.wallet.GetBalances, wallet_pb2.GetBalancesRequest(), account.auth)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(error).error_info.reason == "INVALID_ACCESS_TOKEN"
    assert "expired" in error.details()


async def test_forged_tokens_are_unauthenticated(api: Harness) -> None:
    account = await api.new_account()
    now = api.clock.now()
    # The right kid, another key.
    impostor = RoleAwareAccessTokens([SigningKey.generate(SIGNING_KEY.kid)])
    forged_key, _ = impostor.issue(user_id=account.user_id, device_id="d", session_id="s", now=now)
    # An operator token minted with the attacker's key.
    forged_operator, _ = impostor.issue_operator_token(operator="mallory", now=now)
    # HS256 "signed" with our public key (the classic algorithm confusion).
    public_pem = SIGNING_KEY.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    confused = jwt.encode(
        claims, public_pem.decode()[:64], algorithm="HS256", headers={"kid": SIGNING_KEY.kid}
    )
    # alg none.
    unsigned = f"{_b64({'alg': 'none', 'kid': SIGNING_KEY.kid})}.{_b64(claims)}."
    # A real token whose subject was changed: the signature no longer matches.
    head, _, signature = account.access_token.split(".")
    other = {**claims, "sub": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"}
    tampered = f"{head}.{_b64(other)}.{signature}"

    for token in (forged_key, confused, unsigned, tampered):
        error = await _refused(api.wallet.GetBalances, wallet_pb2.GetBalancesRequest(), bearer(token))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert details_of(error).error_info.reason == "INVALID_ACCESS_TOKEN"
    error = await _refused(api.ops.GetOutboxStats, ops_pb2.GetOutboxStatsRequest(), bearer(forged_operator))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    # the genuine token still works
    await api.wallet.GetBalances(wallet_pb2.GetBalancesRequest(), metadata=account.auth)


async def test_ops_needs_the_operator_role(api: Harness) -> None:
    account = await api.new_account()
    for call, request in (
        (api.ops.GetOutboxStats, ops_pb2.GetOutboxStatsRequest()),
        (api.ops.GetReconciliationReport, ops_pb2.GetReconciliationReportRequest()),
        (api.ops.GetDeadLetterStats, ops_pb2.GetDeadLetterStatsRequest()),
        (api.ops.ReplayDeadLetters, ops_pb2.ReplayDeadLettersRequest()),
        (api.ops.RunConsistencyCheck, ops_pb2.RunConsistencyCheckRequest()),
    ):
        error = await _refused(call, request, account.auth)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert details_of(error).error_info.reason == "OPERATOR_ROLE_REQUIRED"
    stats = await api.ops.GetOutboxStats(ops_pb2.GetOutboxStatsRequest(), metadata=api.operator_auth())
    assert stats.pending >= 1  # the registration's events


async def test_an_operator_token_is_not_a_user(api: Harness) -> None:
    error = await _refused(api.wallet.GetBalances, wallet_pb2.GetBalancesRequest(), api.operator_auth())
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert details_of(error).error_info.reason == "USER_TOKEN_REQUIRED"


async def test_a_user_cannot_reach_another_users_data(api: Harness) -> None:
    alice, bob = await api.new_account(), await api.new_account()
    await fund_wallet(api, alice.user_id, 5_000_00)
    await api.auth.RequestPhoneVerification(auth_pb2.RequestPhoneVerificationRequest(), metadata=alice.auth)

    # Bob's view never includes Alice's wallet, entries or messages...
    balances = await api.wallet.GetBalances(wallet_pb2.GetBalancesRequest(), metadata=bob.auth)
    entries = await api.wallet.ListLedgerEntries(wallet_pb2.ListLedgerEntriesRequest(), metadata=bob.auth)
    messages = await api.dev.ListSentMessages(dev_pb2.ListSentMessagesRequest(), metadata=bob.auth)
    assert {b.balance.amount_cents for b in balances.balances} == {0}  # his own, empty
    assert list(entries.ledger_entries) == [] and list(messages.messages) == []
    # ...while Alice sees hers.
    mine = await api.wallet.GetBalances(wallet_pb2.GetBalancesRequest(), metadata=alice.auth)
    assert {(b.balance.currency, b.balance.amount_cents) for b in mine.balances} == {
        ("KES", 5_000_00),
        ("USD", 0),
    }
    assert not {b.ledger_account_id for b in mine.balances} & {b.ledger_account_id for b in balances.balances}

    # Bob cannot remove Alice's device: for him it does not exist.
    error = await _refused(
        api.auth.RemoveDevice, auth_pb2.RemoveDeviceRequest(device_id=alice.device_id), bob.auth
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND
    listed = await api.auth.ListDevices(auth_pb2.ListDevicesRequest(), metadata=alice.auth)
    assert [d.device_id for d in listed.devices] == [alice.device_id]

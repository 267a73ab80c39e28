"""Binding a Deriv account goes through the gateway's gRPC Authorize and GetSettings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from application.identity.errors import DerivBindingRefused
from deriv_gateway.accounts_client import GatewayDerivAccounts
from domain.user.kyc_snapshot import KycSnapshot

pytestmark = pytest.mark.integration

CLIENT_TOKEN = "sim-client1-token"  # CR90000001, Alice Wanjiru (deriv_gateway/simulator defaults)


async def test_authorize_names_the_account_behind_a_client_token(start_gateway: Callable[..., Any]) -> None:
    running = await start_gateway()
    accounts = GatewayDerivAccounts(running.channel)

    authorization = await accounts.authorize(CLIENT_TOKEN)

    assert authorization.loginid == "CR90000001"
    assert authorization.currency == "USD"
    assert not authorization.is_virtual
    assert "payments" in authorization.scopes


async def test_get_settings_becomes_a_kyc_snapshot(start_gateway: Callable[..., Any]) -> None:
    running = await start_gateway()
    accounts = GatewayDerivAccounts(running.channel)

    settings = await accounts.get_settings(CLIENT_TOKEN)
    snapshot = KycSnapshot.from_get_settings(dict(settings), taken_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))

    assert snapshot.first_name == "Alice" and snapshot.last_name == "Wanjiru"
    assert all(value not in ("", 0) for value in settings.values())


async def test_a_bad_token_is_a_refused_binding_and_the_token_is_not_in_the_message(
    start_gateway: Callable[..., Any],
) -> None:
    running = await start_gateway()
    accounts = GatewayDerivAccounts(running.channel)

    with pytest.raises(DerivBindingRefused) as refused:
        await accounts.authorize("not-a-real-token-123")
    assert "not-a-real-token-123" not in str(refused.value)

"""authorize, balance, settings, statement and the balance/transaction streams."""

from __future__ import annotations

import pytest

from deriv_gateway.simulator import DerivSimulator
from tests.deriv_sim.helpers import Client, ConnectClient, Control

from .helpers import AGENT, AGENT_TOKEN, ALICE, ALICE_EMAIL, ALICE_TOKEN

pytestmark = pytest.mark.integration


async def test_authorize_fields(client: Client) -> None:
    auth = await client.login(ALICE_TOKEN)
    assert auth["loginid"] == ALICE
    assert auth["currency"] == "USD"
    assert auth["balance"] == 1000.0
    assert auth["email"] == ALICE_EMAIL
    assert auth["fullname"] == "Alice Wanjiru"
    assert auth["is_virtual"] == 0
    assert auth["landing_company_name"] == "svg"
    assert auth["country"] == "ke"
    assert set(auth["scopes"]) == {"read", "trade", "trading_information", "payments"}
    listed = {a["loginid"]: a for a in auth["account_list"]}
    assert set(listed) == {ALICE, "VRTC90000001"}
    assert listed["VRTC90000001"]["is_virtual"] == 1


async def test_authorize_errors_and_rebinding(client: Client) -> None:
    reply = await client.call({"authorize": AGENT_TOKEN, "tokens": [ALICE_TOKEN]})
    assert reply["error"] == {"code": "InvalidToken", "message": "Token is not valid for current user."}
    await client.login(ALICE_TOKEN)
    await client.login(AGENT_TOKEN)  # a later authorize replaces the binding
    assert (await client.call({"balance": 1}))["balance"]["loginid"] == AGENT


async def test_multiple_tokens_select_by_loginid(client: Client) -> None:
    await client.call({"authorize": ALICE_TOKEN, "tokens": ["sim-virtual-token"]})
    virtual = await client.call({"balance": 1, "loginid": "VRTC90000001"})
    assert virtual["balance"]["loginid"] == "VRTC90000001"
    assert virtual["balance"]["balance"] == 10000.0
    other = await client.call({"balance": 1, "loginid": "CR90000002"})
    assert other["error"]["code"] == "AuthorizationRequired"


async def test_balance_all_and_other_account(client: Client) -> None:
    await client.login(ALICE_TOKEN)
    everything = (await client.call({"balance": 1, "account": "all"}))["balance"]
    assert set(everything["accounts"]) == {ALICE, "VRTC90000001"}
    assert everything["total"]["deriv"] == {"amount": 1000.0, "currency": "USD"}
    assert everything["total"]["deriv_demo"] == {"amount": 10000.0, "currency": "USD"}
    denied = await client.call({"balance": 1, "account": "CR90000002"})
    assert denied["error"]["code"] == "PermissionDenied"


async def test_get_settings_and_account_list(client: Client) -> None:
    await client.login(AGENT_TOKEN)
    settings = (await client.call({"get_settings": 1}))["get_settings"]
    assert settings["email"] == "agent@penpay.sim"
    assert settings["first_name"] == "PenPay" and settings["last_name"] == "Agent"
    assert settings["country_code"] == "ke"
    assert settings["is_authenticated_payment_agent"] == 1
    assert isinstance(settings["date_of_birth"], int)
    accounts = (await client.call({"account_list": 1}))["account_list"]
    assert [a["loginid"] for a in accounts] == [AGENT]


async def test_balance_stream_with_req_id_and_already_subscribed(
    connect_client: ConnectClient, sim: DerivSimulator
) -> None:
    agent = await connect_client(sim, AGENT_TOKEN)
    first = await agent.call({"balance": 1, "subscribe": 1, "req_id": 41, "passthrough": {"p": 1}})
    sub_id = first["subscription"]["id"]
    assert first["balance"]["id"] == sub_id and len(sub_id) >= 32
    again = await agent.call({"balance": 1, "subscribe": 1})
    assert again["error"] == {
        "code": "AlreadySubscribed",
        "message": f"You are already subscribed to balance for account {AGENT}.",
    }
    done = await agent.call(
        {"paymentagent_transfer": 1, "amount": 25, "currency": "USD", "transfer_to": ALICE, "req_id": 42}
    )
    assert done["paymentagent_transfer"] == 1
    update = await agent.stream("balance")
    assert update["req_id"] == 41
    assert update["passthrough"] == {"p": 1}
    assert update["subscription"] == {"id": sub_id}
    assert update["echo_req"] == {"balance": 1, "subscribe": 1, "req_id": 41, "passthrough": {"p": 1}}
    assert update["balance"] == {"balance": 49975.0, "currency": "USD", "id": sub_id, "loginid": AGENT}
    # forget: 1 for a live stream, 0 after
    assert (await agent.call({"forget": sub_id}))["forget"] == 1
    assert (await agent.call({"forget": sub_id}))["forget"] == 0
    await agent.call({"paymentagent_transfer": 1, "amount": 25, "currency": "USD", "transfer_to": ALICE})
    assert [m for m in await agent.quiet(0.2) if m["msg_type"] == "balance"] == []


async def test_transaction_stream_sees_incoming_withdrawal(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    agent = await connect_client(sim, AGENT_TOKEN)
    sub = await agent.call({"transaction": 1, "subscribe": 1, "req_id": 5})
    sub_id = sub["subscription"]["id"]
    assert sub["transaction"] == {"id": sub_id}
    alice = await connect_client(sim, ALICE_TOKEN)
    await alice.call({"verify_email": ALICE_EMAIL, "type": "paymentagent_withdraw"})
    code = await control.code(ALICE)
    reply = await alice.call(
        {
            "paymentagent_withdraw": 1,
            "amount": 40,
            "currency": "USD",
            "paymentagent_loginid": AGENT,
            "verification_code": code,
            "description": "PenPay ref W-77",
        }
    )
    assert reply["paymentagent_withdraw"] == 1
    event = await agent.stream("transaction")
    assert event["req_id"] == 5
    tx = event["transaction"]
    assert tx["action"] == "deposit" and tx["amount"] == 40.0 and tx["balance"] == 50040.0
    assert tx["id"] == sub_id and "W-77" in tx["longcode"] and ALICE in tx["longcode"]
    assert (await agent.call({"forget_all": ["transaction", "balance"]}))["forget_all"] == [sub_id]


async def test_logout_forgets_account_streams(client: Client) -> None:
    await client.login(ALICE_TOKEN)
    await client.call({"balance": 1, "subscribe": 1})
    assert (await client.call({"logout": 1}))["logout"] == 1
    assert (await client.call({"balance": 1}))["error"]["code"] == "AuthorizationRequired"
    assert (await client.call({"forget_all": "balance"}))["forget_all"] == []


async def test_statement_filters_and_paging(connect_client: ConnectClient, sim: DerivSimulator) -> None:
    agent = await connect_client(sim, AGENT_TOKEN)
    for i in range(5):
        reply = await agent.call(
            {
                "paymentagent_transfer": 1,
                "amount": 10 + i,
                "currency": "USD",
                "transfer_to": ALICE,
                "description": f"PenPay ref DEP-{i}",
            }
        )
        assert reply["paymentagent_transfer"] == 1, reply
    plain = (await agent.call({"statement": 1}))["statement"]
    assert plain["count"] == 5 and "longcode" not in plain["transactions"][0]
    full = (await agent.call({"statement": 1, "description": 1, "limit": 2, "offset": 1}))["statement"]
    assert full["count"] == 2
    assert "DEP-3" in full["transactions"][0]["longcode"]  # newest first, one skipped
    assert full["transactions"][0]["amount"] == -13.0
    assert full["transactions"][0]["to"] == {"loginid": ALICE}
    found = [
        t
        for t in (await agent.call({"statement": 1, "description": 1}))["statement"]["transactions"]
        if "PenPay ref DEP-2" in t["longcode"]
    ]
    assert len(found) == 1 and found[0]["action_type"] == "withdrawal"
    now = sim.engine.clock.epoch()
    later = (await agent.call({"statement": 1, "date_from": now + 100}))["statement"]
    assert later["count"] == 0
    deposits = (await agent.call({"statement": 1, "action_type": "deposit"}))["statement"]
    assert deposits["count"] == 0


async def test_website_status_and_paymentagent_list(client: Client) -> None:
    status = (await client.call({"website_status": 1}))["website_status"]
    assert status["currencies_config"]["USD"]["fractional_digits"] == 2
    assert status["site_status"] == "up"
    agents = (await client.call({"paymentagent_list": "ke", "currency": "USD"}))["paymentagent_list"]
    assert [a["paymentagent_loginid"] for a in agents["list"]] == [AGENT]
    assert agents["list"][0]["min_withdrawal"] == "10.00"
    assert (await client.call({"paymentagent_list": "ug"}))["paymentagent_list"]["list"] == []

"""Payment agent deposits and withdrawals, verification codes, limits and the books."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deriv_gateway.simulator import DerivSimulator
from tests.deriv_sim.helpers import ConnectClient, Control

from .helpers import AGENT, AGENT_TOKEN, ALICE, ALICE_EMAIL, ALICE_TOKEN

pytestmark = pytest.mark.integration


def transfer(amount: float, to: str = ALICE, **extra: Any) -> dict[str, Any]:
    return {"paymentagent_transfer": 1, "amount": amount, "currency": "USD", "transfer_to": to, **extra}


def withdraw(code: str, amount: float = 20, pa: str = AGENT, **extra: Any) -> dict[str, Any]:
    return {
        "paymentagent_withdraw": 1,
        "amount": amount,
        "currency": "USD",
        "paymentagent_loginid": pa,
        "verification_code": code,
        **extra,
    }


async def test_transfer_dry_run_then_real(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    agent = await connect_client(sim, AGENT_TOKEN)
    dry = await agent.call(transfer(10.75, to=ALICE.lower(), dry_run=1))
    assert dry["paymentagent_transfer"] == 2
    assert dry["client_to_full_name"] == "Alice Wanjiru" and dry["client_to_loginid"] == ALICE
    assert "transaction_id" not in dry
    assert (await control.get("/books/transfers"))["count"] == 0
    done = await agent.call(transfer(10.75, description="PenPay ref DEP-1"))
    assert done["paymentagent_transfer"] == 1 and isinstance(done["transaction_id"], int)
    assert (await agent.call({"balance": 1}))["balance"]["balance"] == 49989.25
    alice = await connect_client(sim, ALICE_TOKEN)
    assert (await alice.call({"balance": 1}))["balance"]["balance"] == 1010.75
    books = await control.get("/books/transfers", description_contains="DEP-1")
    assert books["count"] == 1
    record = books["transfers"][0]
    assert record["amount"] == "10.75" and record["amount_minor"] == 1075
    assert record["description"] == "PenPay ref DEP-1"
    assert record["debit_transaction_id"] == done["transaction_id"]
    assert re.search(
        r"^Transfer from Payment Agent PenPay Agent \(CR90000000\) to CR90000001\. Transaction reference: "
        r"[0-9A-F-]{36}\. Timestamp: \d\d-\w{3}-\d\d \d\d:\d\d:\d\dGMT\. Agent note: PenPay ref DEP-1$",
        record["remark"],
    )
    # the client sees the deposit in its statement, with the agent's note
    rows = (await alice.call({"statement": 1, "description": 1}))["statement"]["transactions"]
    assert rows[0]["action_type"] == "deposit" and "DEP-1" in rows[0]["longcode"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (transfer(9.99), "Invalid amount. Minimum is 10, maximum is 2000."),
        (transfer(2000.01), "Invalid amount. Minimum is 10, maximum is 2000."),
        (transfer(-50), "Invalid amount. Minimum is 10, maximum is 2000."),
        (transfer(10.123), "Invalid amount. Amount provided can not have more than 2 decimal places."),
        (transfer(10, currency="XYZ"), "Invalid currency."),
        (transfer(10, currency="EUR"), None),
        (transfer(10, to="CR12345678"), "Login ID (CR12345678) does not exist."),
        (transfer(10, to=AGENT), "Payment agent transfers are not allowed within the same account."),
        (
            transfer(10, to="VRTC90000001"),
            "Payment agent transfers are not allowed for the specified accounts.",
        ),
        (
            transfer(10, to="CR90000004"),
            "We're unable to process this transfer because the client's resident",
        ),
    ],
)
async def test_transfer_errors(
    connect_client: ConnectClient,
    sim: DerivSimulator,
    control: Control,
    request_: dict[str, Any],
    message: str | None,
) -> None:
    agent = await connect_client(sim, AGENT_TOKEN)
    reply = await agent.call(request_)
    assert reply["error"]["code"] == "PaymentAgentTransferError", reply
    if request_["currency"] == "EUR":
        assert "is not the default account currency for payment agent CR90000000" in reply["error"]["message"]
    else:
        assert reply["error"]["message"].startswith(message)
    assert (await control.get("/books/transfers"))["count"] == 0


async def test_transfer_insufficient_balance_and_not_a_pa(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    await control.post(f"/accounts/{AGENT}/adjust", {"amount": "-49995.00"})
    agent = await connect_client(sim, AGENT_TOKEN)
    reply = await agent.call(transfer(10))
    assert reply["error"] == {
        "code": "PaymentAgentTransferError",
        "message": "Your account balance is insufficient for this transaction.",
    }
    alice = await connect_client(sim, ALICE_TOKEN)
    reply = await alice.call(transfer(10, to="CR90000002"))
    assert reply["error"]["message"] == "You are not authorized for transfers via payment agents."
    virtual = await connect_client(sim, "sim-virtual-token")
    reply = await virtual.call(transfer(10))
    assert reply["error"] == {"code": "PermissionDenied", "message": "Permission denied."}


async def test_verify_email_code_lifecycle(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    alice = await connect_client(sim, ALICE_TOKEN)
    assert (await alice.call({"verify_email": ALICE_EMAIL, "type": "paymentagent_withdraw"}))[
        "verify_email"
    ] == 1
    first = await control.code(ALICE)
    assert re.fullmatch(r"[A-Za-z0-9]{8}", first)
    await alice.call({"verify_email": ALICE_EMAIL, "type": "paymentagent_withdraw"})
    second = await control.code(ALICE)
    assert second != first
    box = await control.get(f"/mailbox/{ALICE}")
    assert [m["status"] for m in box["messages"]] == ["superseded", "active"]
    # a new code cancels the old one
    reply = await alice.call(withdraw(first))
    assert reply["error"] == {"code": "InvalidToken", "message": "Your token has expired or is invalid."}
    # dry_run skips code validation (and does not use the code up)
    assert (await alice.call(withdraw("whatever1", dry_run=1)))["paymentagent_withdraw"] == 2
    # the code is consumed when checked, even if the withdrawal then fails
    reply = await alice.call(withdraw(second, amount=5))
    assert reply["error"] == {
        "code": "PaymentAgentWithdrawError",
        "message": "Invalid amount. Minimum is 10, maximum is 2000.",
    }
    reply = await alice.call(withdraw(second, amount=50))
    assert reply["error"]["code"] == "InvalidToken"
    assert (await control.get(f"/mailbox/{ALICE}"))["latest"] is None


async def test_mailbox_shows_a_code_requested_with_an_amount(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    # amounts in url_parameters are parsed as Decimal: the control API must still serialise them
    alice = await connect_client(sim, ALICE_TOKEN)
    params = {"pa_amount": 25.5, "pa_currency": "USD", "pa_loginid": AGENT}
    reply = await alice.call(
        {"verify_email": ALICE_EMAIL, "type": "paymentagent_withdraw", "url_parameters": params}
    )
    assert reply["verify_email"] == 1
    box = await control.get(f"/mailbox/{ALICE}")
    assert box["latest"] and box["messages"][-1]["url_parameters"] == params
    listed = await control.get("/mailbox", loginid=ALICE)
    assert listed["messages"][-1]["url_parameters"]["pa_amount"] == 25.5


async def test_code_expires_after_an_hour(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    alice = await connect_client(sim, ALICE_TOKEN)
    await alice.call({"verify_email": ALICE_EMAIL, "type": "paymentagent_withdraw"})
    code = await control.code(ALICE)
    await control.post("/clock", {"advance": 3599})
    assert (await control.get("/mailbox", loginid=ALICE, status="active"))["count"] == 1
    await control.post("/clock", {"advance": 2})
    assert (await control.get("/mailbox", loginid=ALICE))["messages"][0]["status"] == "expired"
    reply = await alice.call(withdraw(code))
    assert reply["error"]["code"] == "InvalidToken"


async def test_verify_email_sends_nothing_unless_own_address(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    anon = await connect_client(sim)
    assert (await anon.call({"verify_email": ALICE_EMAIL, "type": "paymentagent_withdraw"}))[
        "verify_email"
    ] == 1
    brian = await connect_client(sim, "sim-client2-token")
    assert (await brian.call({"verify_email": ALICE_EMAIL, "type": "paymentagent_withdraw"}))[
        "verify_email"
    ] == 1
    assert (await control.get("/mailbox"))["count"] == 0
    carol = await connect_client(sim, "sim-client3-token")
    reply = await carol.call({"verify_email": "carol@clients.sim", "type": "paymentagent_withdraw"})
    assert reply["error"] == {
        "code": "NoBalanceVerifyMail",
        "message": "Withdrawal isn't possible because you have no funds in your USD account.",
    }


async def test_withdraw_happy_path_and_errors(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    alice = await connect_client(sim, ALICE_TOKEN)

    async def fresh_code() -> str:
        await alice.call({"verify_email": ALICE_EMAIL, "type": "paymentagent_withdraw"})
        return await control.code(ALICE)

    done = await alice.call(withdraw(await fresh_code(), amount=100.5, description="PenPay ref WD-9"))
    assert done["paymentagent_withdraw"] == 1 and done["paymentagent_name"] == "PenPay Agent"
    assert isinstance(done["transaction_id"], int)
    assert (await alice.call({"balance": 1}))["balance"]["balance"] == 899.5
    record = (await control.get("/books/transfers", description_contains="WD-9"))["transfers"][0]
    assert record["kind"] == "paymentagent_withdraw" and record["to_loginid"] == AGENT
    assert record["remark"].startswith(f"Transfer from {ALICE} to Payment Agent PenPay Agent ({AGENT}) ")
    assert record["remark"].endswith(". Client note: PenPay ref WD-9")

    cases = [
        (
            withdraw("", amount=900, dry_run=1),
            "Sorry, you cannot withdraw. Your account balance is 899.50 USD.",
        ),
        (withdraw("", pa="CR90000002", dry_run=1), "Please enter a valid payment agent ID."),
        (withdraw("", amount=2500, dry_run=1), "Invalid amount. Minimum is 10, maximum is 2000."),
        (
            withdraw("", amount=10.001, dry_run=1),
            "Invalid amount. Amount provided can not have more than 2 decimal places.",
        ),
    ]
    for request_, message in cases:
        request_["verification_code"] = "dryrun00"
        reply = await alice.call(request_)
        assert reply["error"] == {"code": "PaymentAgentWithdrawError", "message": message}, reply
    # a code issued to someone else's address
    brian = await connect_client(sim, "sim-client2-token")
    await brian.call({"verify_email": "brian@clients.sim", "type": "paymentagent_withdraw"})
    reply = await alice.call(withdraw(await control.code("CR90000002")))
    assert reply["error"]["code"] == "BadSession"
    agent = await connect_client(sim, AGENT_TOKEN)
    await agent.call({"verify_email": "agent@penpay.sim", "type": "paymentagent_withdraw"})
    reply = await agent.call(withdraw(await control.code(AGENT)))
    assert reply["error"]["message"] == "You cannot withdraw funds to the same account."


async def test_books_balance_after_many_operations(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    before = await control.get("/books/summary")
    assert before["balanced"] is True
    agent = await connect_client(sim, AGENT_TOKEN)
    alice = await connect_client(sim, ALICE_TOKEN)
    for i in range(10):
        assert (await agent.call(transfer(round(10 + i * 0.01, 2), description=f"PenPay ref B-{i}")))[
            "paymentagent_transfer"
        ] == 1
    for i in range(3):
        await alice.call({"verify_email": ALICE_EMAIL, "type": "paymentagent_withdraw"})
        reply = await alice.call(withdraw(await control.code(ALICE), amount=11.11, description=f"ref X-{i}"))
        assert reply["paymentagent_withdraw"] == 1
    after = await control.get("/books/summary")
    assert after["balanced"] is True
    assert after["currencies"]["USD"]["total_minor"] == before["currencies"]["USD"]["total_minor"]
    assert after["transfers"] == 13
    assert (await control.get("/books/transfers", description_contains="PenPay ref B-"))["count"] == 10
    accounts = {a["loginid"]: a for a in (await control.get("/accounts"))["accounts"]}
    assert accounts[AGENT]["balance"] == "49932.88"  # 50000 - 100.45 + 33.33

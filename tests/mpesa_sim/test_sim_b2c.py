from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from mpesa_adapter.simulator import DarajaSimulator
from mpesa_adapter.simulator.config import SANDBOX_SHORTCODE

from .conftest import PHONE, Daraja, Receiver, fast_config, items, params

pytestmark = pytest.mark.integration

CONVERSATION_RE = re.compile(r"^AG_\d{8}_[0-9a-f]{20}$")
RECEIPT_RE = re.compile(r"^[A-Z][A-L][1-9A-V][A-Z0-9]{7}$")
RECIPIENT = "254705912645"


async def test_b2c_success_result_and_books(daraja: Daraja, receiver: Receiver) -> None:
    status, body = await daraja.b2c("wd-0001", Amount="150")
    assert status == 200
    assert body["OriginatorConversationID"] == "wd-0001"  # v3 echoes it
    assert CONVERSATION_RE.match(body["ConversationID"])
    assert body["ResponseCode"] == "0"
    assert body["ResponseDescription"] == "Accept the service request successfully."
    [result] = await receiver.wait("b2c-result")
    r = result["Result"]
    assert (r["ResultType"], r["ResultCode"]) == (0, 0)
    assert r["ResultDesc"] == "The service request is processed successfully."
    assert r["OriginatorConversationID"] == "wd-0001" and r["ConversationID"] == body["ConversationID"]
    p = params(result)
    assert p["TransactionAmount"] == 150
    assert p["TransactionReceipt"] == r["TransactionID"] and RECEIPT_RE.match(r["TransactionID"])
    assert p["ReceiverPartyPublicName"].startswith(f"{RECIPIENT} - ")
    assert re.fullmatch(r"\d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d", p["TransactionCompletedDateTime"])
    assert p["B2CUtilityAccountAvailableFunds"] == 10_000_000 - 150
    assert p["B2CRecipientIsRegisteredCustomer"] == "Y"
    assert {"B2CWorkingAccountAvailableFunds", "B2CChargesPaidAccountAvailableFunds"} <= set(p)
    assert r["ReferenceData"]["ReferenceItem"]["Key"] == "QueueTimeoutURL"
    await daraja.sim.drain()
    _, entry = await daraja.control("GET", "/books/b2c/wd-0001")
    assert entry["paid"] is True and entry["amount"] == 150 and entry["receipt"] == r["TransactionID"]
    _, books = await daraja.control("GET", "/books")
    assert books["b2c"]["total_paid"] == 150 and books["b2c"]["paid_by_phone"] == {RECIPIENT: 150}
    assert receiver.at("b2c-timeout") == []


async def _failure(daraja: Daraja, receiver: Receiver, ocid: str, **overrides: Any) -> dict[str, Any]:
    status, _ = await daraja.b2c(ocid, **overrides)
    assert status == 200  # failures are asynchronous
    [result] = await receiver.wait("b2c-result")
    assert "ResultParameters" not in result["Result"]
    assert RECEIPT_RE.match(result["Result"]["TransactionID"])  # present even on failure
    await daraja.sim.drain()
    assert daraja.sim.books["b2c"]["total_paid"] == 0
    failed: dict[str, Any] = result["Result"]
    return failed


async def test_bad_security_credential_is_2001(daraja: Daraja, receiver: Receiver) -> None:
    wrong = daraja.sim.security_credential("not-the-password")
    r = await _failure(daraja, receiver, "wd-2001", SecurityCredential=wrong)
    assert (r["ResultCode"], r["ResultDesc"]) == (2001, "The initiator information is invalid.")


async def test_garbage_credential_and_wrong_initiator_are_2001(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.b2c("wd-a", SecurityCredential="bm90LWEtY3JlZGVudGlhbA==")
    await daraja.b2c("wd-b", InitiatorName="someone")
    results = await receiver.wait("b2c-result", 2)
    assert [r["Result"]["ResultCode"] for r in results] == [2001, 2001]


async def test_unregistered_customer_2040_by_phone(daraja: Daraja, receiver: Receiver) -> None:
    r = await _failure(daraja, receiver, "wd-2040", PartyB="254712342040")
    assert r["ResultCode"] == 2040


async def test_b2c_outcome_via_control(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("POST", "/outcomes", {"api": "b2c", "result_code": "SFC_IC0003"})
    r = await _failure(daraja, receiver, "wd-ctl")
    assert (r["ResultCode"], r["ResultDesc"]) == ("SFC_IC0003", "The operator does not exist.")


async def test_amount_limits_and_insufficient_utility(receiver: Receiver) -> None:
    async with DarajaSimulator(fast_config(utility_balance=500)) as sim, aiohttp.ClientSession() as session:
        daraja = Daraja(session, sim, receiver)
        await daraja.b2c("small", Amount=9)
        await daraja.b2c("big", Amount=250_001)
        await daraja.b2c("short", Amount=600)
        await daraja.b2c("bad-msisdn", PartyB="254812345678")
        results = await receiver.wait("b2c-result", 4)
    codes = {r["Result"]["OriginatorConversationID"]: r["Result"]["ResultCode"] for r in results}
    assert codes == {"small": 2, "big": 3, "short": 1, "bad-msisdn": "SFC_IC0003"}


async def test_queue_timeout_after_money_moved(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("POST", "/faults", {"kind": "queue_timeout", "api": "b2c"})
    status, body = await daraja.b2c("wd-qt", Amount=500)
    assert status == 200
    [timeout] = await receiver.wait("b2c-timeout")
    assert timeout["Result"]["ResultType"] == 1
    assert timeout["Result"]["OriginatorConversationID"] == "wd-qt"
    assert timeout["Result"]["ConversationID"] == body["ConversationID"]
    assert timeout["Result"]["ResultDesc"] == "The service request timed out."
    await daraja.sim.drain()
    assert receiver.at("b2c-result") == []  # the Result never comes
    _, entry = await daraja.control("GET", "/books/b2c/wd-qt")
    assert entry["paid"] is True and entry["queue_timed_out"] is True  # but the money moved
    # Reconciliation by Transaction Status reveals the payment
    await daraja.status(OriginalConversationID="wd-qt")
    [status_result] = await receiver.wait("status-result")
    p = params(status_result)
    assert (
        p["TransactionStatus"] == "Completed" and p["ReceiptNo"] == entry["receipt"] and p["Amount"] == "500"
    )


async def test_duplicate_originator_conversation_id(daraja: Daraja, receiver: Receiver) -> None:
    status, _ = await daraja.b2c("wd-dup")
    assert status == 200
    status, body = await daraja.b2c("wd-dup")
    assert status == 500
    assert (body["errorCode"], body["errorMessage"]) == (
        "500.002.1001",
        "Duplicate OriginatorConversationID.",
    )
    await daraja.sim.drain()
    assert daraja.sim.books["b2c"]["total_paid"] == 100  # paid once


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"OriginatorConversationID": None}, "OriginatorConversationID"),
        ({"InitiatorName": ""}, "InitiatorName"),
        ({"SecurityCredential": None}, "SecurityCredential"),
        ({"CommandID": "Payout"}, "CommandID"),
        ({"Amount": "10.5"}, "Amount"),
        ({"PartyA": "60"}, "PartyA"),
        ({"PartyB": "+254705912645"}, "PartyB"),
        ({"Remarks": "x"}, "Remarks"),
        ({"ResultURL": "nope"}, "ResultURL"),
        ({"QueueTimeOutURL": None}, "QueueTimeOutURL"),
    ],
)
async def test_b2c_validation(daraja: Daraja, overrides: dict[str, Any], field: str) -> None:
    body = daraja.b2c_body("wd-v")
    body.update(overrides)
    status, err = await daraja.post(
        "/mpesa/b2c/v3/paymentrequest", {k: v for k, v in body.items() if v is not None}
    )
    assert (status, err["errorCode"], err["errorMessage"]) == (
        400,
        "400.002.02",
        f"Bad Request - Invalid {field}",
    )


async def test_occasion_spelled_either_way(daraja: Daraja, receiver: Receiver) -> None:
    status, _ = await daraja.b2c("wd-o1", Occassion=None, Occasion="Payout")
    assert status == 200


async def test_transaction_status_by_transaction_id_and_by_ocid(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.b2c("wd-ts", Amount=75)
    [result] = await receiver.wait("b2c-result")
    receipt = result["Result"]["TransactionID"]
    status, reply = await daraja.status(TransactionID=receipt)
    assert status == 200 and reply["ResponseCode"] == "0"
    assert CONVERSATION_RE.match(reply["ConversationID"]) and reply["OriginatorConversationID"]
    [by_receipt] = await receiver.wait("status-result")
    assert by_receipt["Result"]["ResultCode"] == 0
    assert by_receipt["Result"]["OriginatorConversationID"] == reply["OriginatorConversationID"]
    names = [p["Key"] for p in by_receipt["Result"]["ResultParameters"]["ResultParameter"]]
    assert names.count("DebitPartyName") == 2  # duplicated keys, as in the portal sample
    p = params(by_receipt)
    assert (p["ReceiptNo"], p["Amount"], p["TransactionStatus"]) == (receipt, "75", "Completed")
    assert p["OriginatorConversationID"] == "wd-ts"
    await daraja.status(OriginalConversationID="wd-ts")
    by_ocid = (await receiver.wait("status-result", 2))[1]
    assert params(by_ocid)["ReceiptNo"] == receipt


async def test_transaction_status_of_an_stk_receipt_unknown_and_bad_credential(
    daraja: Daraja, receiver: Receiver
) -> None:
    await daraja.stk(Amount=33)
    [cb] = await receiver.wait("stk")
    receipt = items(cb)["MpesaReceiptNumber"]
    await daraja.status(TransactionID=receipt)
    await daraja.status(TransactionID="UAB0000000")
    await daraja.status(TransactionID=receipt, SecurityCredential=daraja.sim.security_credential("x"))
    results = await receiver.wait("status-result", 3)
    by_ok = next(r for r in results if r["Result"]["ResultCode"] == 0)
    assert params(by_ok)["Amount"] == "33" and params(by_ok)["DebitPartyName"].startswith(PHONE)
    codes = sorted(str(r["Result"]["ResultCode"]) for r in results)
    assert codes == ["0", "2001", "25"]
    assert all("ResultParameters" not in r["Result"] for r in results if r["Result"]["ResultCode"] != 0)


async def test_transaction_status_validation(daraja: Daraja) -> None:
    status, err = await daraja.status()
    assert (status, err["errorMessage"]) == (400, "Bad Request - Invalid TransactionID")
    status, err = await daraja.status(TransactionID="X", CommandID="Status")
    assert (status, err["errorMessage"]) == (400, "Bad Request - Invalid CommandID")
    status, err = await daraja.status(TransactionID="X", IdentifierType="9")
    assert (status, err["errorMessage"]) == (400, "Bad Request - Invalid IdentifierType")


async def test_account_balance_follows_the_books(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.stk(Amount=1000)
    await daraja.b2c("wd-bal", Amount=400)
    await daraja.sim.drain()
    status, reply = await daraja.balance()
    assert status == 200 and reply["ResponseCode"] == "0"
    [result] = await receiver.wait("balance-result")
    r = result["Result"]
    assert (r["ResultType"], r["ResultCode"]) == ("0", "0")  # strings, as in the portal sample
    p = params(result)
    accounts = {a.split("|")[0]: a.split("|") for a in p["AccountBalance"].split("&")}
    # Each shortcode has its own balance: the payout left the B2C shortcode (it holds the opening
    # balance); the STK payment landed on the Lipa na M-Pesa shortcode.
    assert accounts["Utility Account"][1:3] == ["KES", f"{10_000_000 - 400:.2f}"]
    await daraja.balance(PartyA=SANDBOX_SHORTCODE)
    _, collected = await receiver.wait("balance-result", 2)
    stk_accounts = {a.split("|")[0]: a.split("|") for a in params(collected)["AccountBalance"].split("&")}
    assert stk_accounts["Utility Account"][1:3] == ["KES", f"{1000:.2f}"]
    assert stk_accounts["Working Account"][2] == "0.00"
    await daraja.balance(PartyA="999111")  # not the organisation's: no rights on it
    *_, foreign = await receiver.wait("balance-result", 3)
    assert str(foreign["Result"]["ResultCode"]) == "21"
    assert set(accounts) == {
        "Working Account",
        "Float Account",
        "Utility Account",
        "Charges Paid Account",
        "Organization Settlement Account",
    }
    assert len(p["BOCompletedTime"]) == 14


async def test_account_balance_bad_credential_and_validation(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.balance(SecurityCredential=daraja.sim.security_credential("nope"))
    [result] = await receiver.wait("balance-result")
    assert str(result["Result"]["ResultCode"]) == "2001"
    status, err = await daraja.balance(CommandID="Balance")
    assert (status, err["errorMessage"]) == (400, "Bad Request - Invalid CommandID")

from __future__ import annotations

import base64
import re
from typing import Any

import aiohttp
import pytest

from mpesa_adapter.simulator import DarajaSimulator

from .conftest import PHONE, Daraja, Receiver, fast_config, items

pytestmark = pytest.mark.integration

CHECKOUT_RE = re.compile(r"^ws_CO_\d{14}\d{3}\d{9}$")
MERCHANT_RE = re.compile(r"^[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\d{4,7}$")
RECEIPT_RE = re.compile(r"^[A-Z][A-L][1-9A-V][A-Z0-9]{7}$")


async def test_accepted_push_then_success_callback(daraja: Daraja, receiver: Receiver) -> None:
    status, body = await daraja.stk(Amount="25")
    assert status == 200
    assert body["ResponseCode"] == "0"
    assert (
        body["ResponseDescription"] == body["CustomerMessage"] == "Success. Request accepted for processing"
    )
    assert CHECKOUT_RE.match(body["CheckoutRequestID"]) and body["CheckoutRequestID"].endswith(PHONE[3:])
    assert MERCHANT_RE.match(body["MerchantRequestID"])
    [callback] = await receiver.wait("stk")
    cb = callback["Body"]["stkCallback"]
    assert cb["CheckoutRequestID"] == body["CheckoutRequestID"]
    assert cb["MerchantRequestID"] == body["MerchantRequestID"]
    assert cb["ResultCode"] == 0 and isinstance(cb["ResultCode"], int)
    assert cb["ResultDesc"] == "The service request is processed successfully."
    meta = items(callback)
    assert meta["Amount"] == 25 and isinstance(meta["Amount"], (int, float))
    assert RECEIPT_RE.match(meta["MpesaReceiptNumber"])
    assert isinstance(meta["TransactionDate"], int) and len(str(meta["TransactionDate"])) == 14
    assert meta["PhoneNumber"] == int(PHONE)
    assert "Balance" in meta and meta["Balance"] is None  # present without a Value, as Daraja sends it


@pytest.mark.parametrize(
    ("suffix", "code", "desc"),
    [
        ("1032", 1032, "Request cancelled by user."),
        ("1037", 1037, "DS timeout user cannot be reached."),
        ("2001", 2001, "The initiator information is invalid."),
        ("0001", 1, "The balance is insufficient for the transaction."),
        ("1019", 1019, "Transaction has expired."),
        (
            "1001",
            1001,
            "Unable to lock subscriber, a transaction is already in process for the current subscriber",
        ),
    ],
)
async def test_failure_outcomes_by_phone_suffix(
    daraja: Daraja, receiver: Receiver, suffix: str, code: int, desc: str
) -> None:
    phone = "25471234" + suffix
    status, body = await daraja.stk(PhoneNumber=phone)
    assert status == 200
    [callback] = await receiver.wait("stk")
    cb = callback["Body"]["stkCallback"]
    assert cb == {
        "MerchantRequestID": body["MerchantRequestID"],
        "CheckoutRequestID": body["CheckoutRequestID"],
        "ResultCode": code,
        "ResultDesc": desc,
    }  # no CallbackMetadata on failure
    await daraja.sim.drain()
    assert daraja.sim.books["stk"]["total_charged"] == 0


async def test_outcome_chosen_through_control_api(daraja: Daraja, receiver: Receiver) -> None:
    status, _ = await daraja.control("POST", "/outcomes", {"api": "stk", "result_code": 1032, "count": 1})
    assert status == 201
    await daraja.stk()
    await daraja.sim.drain()
    await daraja.stk()
    callbacks = await receiver.wait("stk", 2)
    assert [c["Body"]["stkCallback"]["ResultCode"] for c in callbacks] == [1032, 0]


VALID = object()


def _password(short: str, ts: str) -> str:
    from mpesa_adapter.simulator.config import SANDBOX_PASSKEY

    return base64.b64encode(f"{short}{SANDBOX_PASSKEY}{ts}".encode()).decode()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"BusinessShortCode": "12AB"}, "Bad Request - Invalid BusinessShortCode"),
        ({"BusinessShortCode": None}, "Bad Request - Invalid BusinessShortCode"),
        ({"Password": None}, "Bad Request - Invalid Password"),
        ({"Timestamp": "2024-01-01"}, "Bad Request - Invalid Timestamp"),
        ({"Timestamp": "20241301000000"}, "Bad Request - Invalid Timestamp"),
        ({"TransactionType": "CustomerPayBill"}, "Bad Request - Invalid TransactionType"),
        ({"Amount": 10.5}, "Bad Request - Invalid Amount"),
        ({"Amount": "10.00"}, "Bad Request - Invalid Amount"),
        ({"Amount": 0}, "Bad Request - Invalid Amount"),
        ({"Amount": 250_001}, "Bad Request - Invalid Amount"),
        ({"Amount": None}, "Bad Request - Invalid Amount"),
        ({"PartyA": "0708374149"}, "Bad Request - Invalid PartyA"),
        ({"PartyB": "17"}, "Bad Request - Invalid PartyB"),
        ({"PhoneNumber": "+254708374149", "PartyA": PHONE}, "Bad Request - Invalid PhoneNumber"),
        ({"PhoneNumber": "254808374149", "PartyA": PHONE}, "Bad Request - Invalid PhoneNumber"),
        ({"CallBackURL": "ftp://example.com/cb"}, "Bad Request - Invalid CallBackURL"),
        ({"CallBackURL": "not a url"}, "Bad Request - Invalid CallBackURL"),
        ({"AccountReference": "ABCDEFGHIJKLM"}, "Bad Request - Invalid AccountReference"),
        ({"AccountReference": None}, "Bad Request - Invalid AccountReference"),
        ({"TransactionDesc": "FOURTEEN CHARS"}, "Bad Request - Invalid TransactionDesc"),
    ],
)
async def test_validation_errors(daraja: Daraja, overrides: dict[str, Any], message: str) -> None:
    status, body = await daraja.stk(**overrides)
    assert status == 400
    assert body["errorCode"] == "400.002.02" and body["errorMessage"] == message
    assert set(body) == {"requestId", "errorCode", "errorMessage"}


async def test_limits_and_optional_desc_accepted(daraja: Daraja, receiver: Receiver) -> None:
    status, _ = await daraja.stk(Amount=250_000, TransactionDesc=None, AccountReference="ABCDEFGHIJKL")
    assert status == 200
    status, _ = await daraja.stk(Amount=1, PhoneNumber="254112345678")
    assert status == 200


async def test_merchant_and_password_checks(daraja: Daraja) -> None:
    body = daraja.stk_body()
    status, err = await daraja.stk(BusinessShortCode=123456, PartyB="123456")
    assert (status, err["errorCode"], err["errorMessage"]) == (500, "500.001.1001", "Merchant does not exist")
    # Password built with another Timestamp than the one sent
    other = _password("174379", "20200101000000")
    status, err = await daraja.stk(Password=other)
    assert (status, err["errorMessage"]) == (500, "[MerchantValidate] - Wrong credentials")
    status, err = await daraja.stk(Password="bm90IGl0", Timestamp=body["Timestamp"])
    assert (status, err["errorCode"]) == (500, "500.001.1001")


async def test_missing_content_type_is_invalid_shortcode(daraja: Daraja) -> None:
    token = await daraja.login()
    async with daraja.session.post(
        f"{daraja.base}/mpesa/stkpush/v1/processrequest",
        data=b"{}",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
    ) as resp:
        body = await resp.json()
    assert (resp.status, body["errorMessage"]) == (400, "Bad Request - Invalid BusinessShortCode")


async def test_subscriber_lock_while_a_push_is_pending(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("PATCH", "/config", {"callback_delay": 0.3})
    status, _ = await daraja.stk()
    assert status == 200
    status, body = await daraja.stk()
    assert (status, body["errorCode"]) == (500, "500.001.1001")
    assert body["errorMessage"].startswith("Unable to lock subscriber")
    await receiver.wait("stk")
    status, _ = await daraja.stk()
    assert status == 200


async def test_stk_query_pending_then_final(daraja: Daraja, receiver: Receiver) -> None:
    await daraja.control("PATCH", "/config", {"callback_delay": 0.3})
    _, push = await daraja.stk(PhoneNumber="254711111032")
    checkout = push["CheckoutRequestID"]
    status, pending = await daraja.stk_query(checkout)
    assert status == 500
    assert pending == {
        "requestId": checkout,
        "errorCode": "500.001.1001",
        "errorMessage": "The transaction is being processed",
    }
    await receiver.wait("stk")
    status, final = await daraja.stk_query(checkout)
    assert status == 200
    assert final == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successfully",
        "MerchantRequestID": push["MerchantRequestID"],
        "CheckoutRequestID": checkout,
        "ResultCode": "1032",
        "ResultDesc": "Request cancelled by user.",
    }


async def test_stk_query_success_unknown_and_validation(daraja: Daraja, receiver: Receiver) -> None:
    _, push = await daraja.stk()
    await receiver.wait("stk")
    status, final = await daraja.stk_query(push["CheckoutRequestID"])
    assert (status, final["ResultCode"]) == (200, "0")
    status, unknown = await daraja.stk_query("ws_CO_01012020000000000708374149")
    assert (status, unknown["errorMessage"]) == (500, "The transaction does not exist")
    status, bad = await daraja.stk_query(push["CheckoutRequestID"], Timestamp="20200101000000")
    assert (status, bad["errorMessage"]) == (500, "[MerchantValidate] - Wrong credentials")
    status, bad = await daraja.stk_query("")
    assert (status, bad["errorMessage"]) == (400, "Bad Request - Invalid CheckoutRequestID")


async def test_books_record_what_was_charged(daraja: Daraja, receiver: Receiver) -> None:
    _, ok = await daraja.stk(Amount=40)
    _, cancelled = await daraja.stk(Amount=70, PhoneNumber="254722001032")
    _, ok2 = await daraja.stk(Amount=5, PhoneNumber="254722000000")
    await daraja.sim.drain()
    status, books = await daraja.control("GET", "/books")
    assert status == 200
    assert books["stk"]["total_charged"] == 45
    assert books["stk"]["charged_by_phone"] == {PHONE: 40, "254722000000": 5}
    status, entry = await daraja.control("GET", f"/books/stk/{ok['CheckoutRequestID']}")
    assert entry["charged"] is True and entry["amount"] == 40 and RECEIPT_RE.match(entry["receipt"])
    callback = next(
        c
        for c in receiver.at("stk")
        if c["Body"]["stkCallback"]["CheckoutRequestID"] == ok["CheckoutRequestID"]
    )
    assert items(callback)["MpesaReceiptNumber"] == entry["receipt"]
    _, entry = await daraja.control("GET", f"/books/stk/{cancelled['CheckoutRequestID']}")
    assert entry["charged"] is False and entry["result_code"] == 1032 and entry["receipt"] is None
    _, phone = await daraja.control("GET", "/books/phone/254722000000")
    assert phone["charged"] == 5
    status, _ = await daraja.control("GET", "/books/stk/ws_CO_nope")
    assert status == 404
    assert books["accounts"]["utility"] == books["accounts"]["opening_utility"] + 45
    assert ok2["CheckoutRequestID"] != ok["CheckoutRequestID"]


async def test_async_limit_rules_and_product_assignment(receiver: Receiver) -> None:
    config = fast_config(stk_limits_sync=False, tills={"174379": ["5555555"]}, repeat_rule_seconds=60)
    async with DarajaSimulator(config) as sim, aiohttp.ClientSession() as session:
        daraja = Daraja(session, sim, receiver)
        await daraja.stk(Amount=300_000, PhoneNumber="254700102222")
        await daraja.stk(Amount=50, PhoneNumber="254700100333", PartyB="999999")
        await daraja.stk(
            Amount=50, PhoneNumber="254700100444", TransactionType="CustomerBuyGoodsOnline", PartyB="4444444"
        )
        await daraja.stk(
            Amount=50, PhoneNumber="254700100555", TransactionType="CustomerBuyGoodsOnline", PartyB="5555555"
        )
        await sim.drain()
        await daraja.stk(
            Amount=50, PhoneNumber="254700100555", TransactionType="CustomerBuyGoodsOnline", PartyB="5555555"
        )
        callbacks = await receiver.wait("stk", 5)
    codes = {
        c["Body"]["stkCallback"]["CheckoutRequestID"][-9:]: c["Body"]["stkCallback"]["ResultCode"]
        for c in callbacks[:4]
    }
    assert codes == {"700102222": 3, "700100333": 2028, "700100444": 2028, "700100555": 0}
    assert callbacks[4]["Body"]["stkCallback"]["ResultCode"] == 17  # same amount, same phone, within window


async def test_daily_limit(receiver: Receiver) -> None:
    async with DarajaSimulator(fast_config(daily_limit=300)) as sim, aiohttp.ClientSession() as session:
        daraja = Daraja(session, sim, receiver)
        await daraja.stk(Amount=200)
        await sim.drain()
        await daraja.stk(Amount=101)
        callbacks = await receiver.wait("stk", 2)
    assert [c["Body"]["stkCallback"]["ResultCode"] for c in callbacks] == [0, 4]

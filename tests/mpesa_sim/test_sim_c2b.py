"""The simulator's C2B (paybill) side over real sockets: Register URL as Daraja validates it, a
customer paying (validation asked first, ResponseType deciding when it cannot be), the confirmation
and the books; the MSISDN masked as in 2026."""

from __future__ import annotations

from typing import Any

import pytest

from mpesa_adapter.simulator.config import SANDBOX_SHORTCODE

from .conftest import PHONE, Daraja, Receiver

pytestmark = pytest.mark.integration

REGISTER = "/mpesa/c2b/v1/registerurl"


async def _register(daraja: Daraja, validation_url: str, response_type: str = "Completed") -> tuple[int, Any]:
    assert daraja.receiver is not None
    return await daraja.post(
        REGISTER,
        {
            "ShortCode": SANDBOX_SHORTCODE,
            "ResponseType": response_type,
            "ConfirmationURL": daraja.receiver.url("confirm"),
            "ValidationURL": validation_url,
        },
    )


async def test_register_url_takes_only_daraja_s_exact_values(daraja: Daraja, receiver: Receiver) -> None:
    status, body = await _register(daraja, receiver.url("validate"), response_type="completed")
    assert (status, body["errorCode"]) == (400, "400.002.02") and "ResponseType" in body["errorMessage"]
    status, body = await daraja.post(
        REGISTER,
        {
            "ShortCode": "999999",
            "ResponseType": "Completed",
            "ConfirmationURL": receiver.url("c"),
            "ValidationURL": receiver.url("v"),
        },
    )
    assert (status, body["errorCode"]) == (400, "400.002.02")
    status, body = await daraja.control("POST", "/c2b/pay", {"amount": 10, "account": "X"})
    assert status == 400 and "no URLs are registered" in body["error"]

    status, body = await _register(daraja, receiver.url("validate"))

    assert (status, body["ResponseCode"], body["ResponseDescription"]) == (200, "0", "Success")
    assert "OriginatorCoversationID" in body  # sic
    _, urls = await daraja.control("GET", "/c2b/urls")
    assert urls[SANDBOX_SHORTCODE]["validation_url"] == receiver.url("validate")


async def test_a_paybill_payment_is_validated_then_collected_and_confirmed(
    daraja: Daraja, receiver: Receiver
) -> None:
    await _register(daraja, receiver.url("validate"))
    # The payment lands on the paybill shortcode's own account (empty at opening).
    before = daraja.sim.books["accounts"]["utility_by_shortcode"].get(SANDBOX_SHORTCODE, 0)

    status, paid = await daraja.control(
        "POST", "/c2b/pay", {"amount": 1300, "account": "PPABC", "phone": PHONE}
    )

    assert (status, paid["status"], paid["validation"]) == (201, "completed", "accepted")
    [validation] = receiver.at("validate")
    [confirmation] = await receiver.wait("confirm")
    for body in (validation, confirmation):
        assert (body["TransID"], body["TransAmount"], body["BillRefNumber"]) == (
            paid["TransID"],
            "1300.00",
            "PPABC",
        )
        assert body["MSISDN"] == f"0{PHONE[3:6]}***{PHONE[-3:]}" and PHONE not in str(body)
        assert body["TransactionType"] == "Pay Bill" and body["BusinessShortCode"] == SANDBOX_SHORTCODE
    assert (
        validation["OrgAccountBalance"] == "" and confirmation["OrgAccountBalance"] == f"{before + 1300}.00"
    )
    [record] = daraja.sim.books["c2b"]["transactions"]
    assert (record["trans_id"], record["collected"], record["amount"]) == (paid["TransID"], True, 1300)
    assert daraja.sim.books["accounts"]["utility_by_shortcode"][SANDBOX_SHORTCODE] == before + 1300


async def test_an_unreachable_validation_url_follows_the_response_type(
    daraja: Daraja, receiver: Receiver
) -> None:
    nowhere = "http://127.0.0.1:9/validate"  # discard port: nothing answers
    await _register(daraja, nowhere, response_type="Cancelled")
    _, cancelled = await daraja.control(
        "POST", "/c2b/pay", {"amount": 500, "account": "PPABC", "phone": PHONE}
    )
    await _register(daraja, nowhere, response_type="Completed")
    _, completed = await daraja.control(
        "POST", "/c2b/pay", {"amount": 700, "account": "PPABC", "phone": PHONE}
    )
    await daraja.sim.drain()

    assert (cancelled["status"], cancelled["validation"]) == ("declined", "unreachable")
    assert (completed["status"], completed["validation"]) == ("completed", "unreachable")
    assert [c["TransID"] for c in receiver.at("confirm")] == [completed["TransID"]]
    collected = [r["trans_id"] for r in daraja.sim.books["c2b"]["transactions"] if r["collected"]]
    assert collected == [completed["TransID"]]


async def test_whole_numbers_and_skipped_validation_on_request(daraja: Daraja, receiver: Receiver) -> None:
    await _register(daraja, receiver.url("validate"))
    await daraja.control("PATCH", "/config", {"c2b_msisdn": "full"})

    _, paid = await daraja.control(
        "POST", "/c2b/pay", {"amount": 800, "account": "", "phone": PHONE, "validation": False, "copies": 2}
    )

    assert (paid["status"], paid["validation"]) == ("completed", "skipped")
    confirmations = await receiver.wait("confirm", count=2)
    assert [c["MSISDN"] for c in confirmations] == [PHONE, PHONE]
    assert receiver.at("validate") == []

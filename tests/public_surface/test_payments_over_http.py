"""penpay.payments.v1.PaymentsService through the HTTP bridge over the real orchestrators (KYC
refreshed from the Deriv simulator through the real gateway): every RPC succeeding and refused.
The saga's later steps (STK push, callbacks, transfers) are the payments tests' business."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from domain.shared.clock import FixedClock
from persistence.tables import transactions
from tests.api.conftest import Gateway

from .conftest import Surface, User, error_shape, serve_surface
from .state import fingerprint

pytestmark = pytest.mark.integration


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"http-{secrets.token_hex(8)}"}


def mailed_code(surface: Surface) -> str:
    mails = [m for m in surface.gateway.simulator.engine.books.mailbox if m.loginid == "CR90000001"]
    assert mails, "Deriv sent no verification email"
    return str(mails[-1].code)


@pytest.fixture
async def payer(surface: Surface) -> User:
    return await surface.payer()


@pytest.fixture
async def on_mariadb(fresh_mariadb_url: str, clock: FixedClock, gateway: Gateway) -> AsyncIterator[Surface]:
    """The surface on MariaDB only: CHECKSUM TABLE fingerprints the whole database."""
    async with serve_surface(fresh_mariadb_url, clock, gateway) as served:
        yield served


async def test_deposit_initiated_then_read_back(surface: Surface, payer: User) -> None:
    started = await payer.browser.post(
        "/v1/deposits", {"amount_cents": "130000", "currency": "KES"}, headers=key()
    )
    assert started.status == 200, started.json
    tx = started.json["transaction"]
    assert tx["type"] == "TRANSACTION_TYPE_DEPOSIT" and tx["status"] == "pending"
    assert tx["amount"] == {"amount_cents": "130000", "currency": "KES"}  # int64 as a JSON string
    assert tx["converted_amount"] == {"amount_cents": "1000", "currency": "USD"}  # 130 KES/USD
    assert (tx["rate"], tx["kes_per_usd"]) == ("1/130", "130")  # exact both ways
    assert tx["user_id"] == payer.user_id and tx["deriv_login_id"] == "CR90000001"
    assert tx["created_at"].endswith("Z") and tx["failure_reason"] == ""  # unpopulated fields emitted

    got = await payer.browser.get(f"/v1/transactions/{tx['transaction_id']}")
    assert got.status == 200 and got.json == {"transaction": tx}
    listed = await payer.browser.get("/v1/transactions", params={"page_size": "10"})
    assert listed.status == 200
    assert [t["transaction_id"] for t in listed.json["transactions"]] == [tx["transaction_id"]]
    assert listed.json["next_page_token"] == ""

    in_usd = await payer.browser.post(
        "/v1/deposits", {"amount_cents": "1000", "currency": "USD"}, headers=key()
    )
    error_shape(in_usd, 400, 3)
    assert in_usd.violated_fields == ["currency"]
    assert await surface.count(transactions) == 1


async def test_transactions_of_others_and_bad_ids_are_refused(surface: Surface, payer: User) -> None:
    started = await payer.browser.post(
        "/v1/deposits", {"amount_cents": "130000", "currency": "KES"}, headers=key()
    )
    tx_id = started.json["transaction"]["transaction_id"]
    stranger = await surface.sign_up()

    hidden = await stranger.browser.get(f"/v1/transactions/{tx_id}")
    error_shape(hidden, 404, 5)
    assert hidden.reason == "TRANSACTION_NOT_FOUND"
    malformed = await payer.browser.get("/v1/transactions/not-a-uuid")
    error_shape(malformed, 400, 3)
    assert malformed.violated_fields == ["transaction_id"]
    newline = await payer.browser.get("/v1/transactions/a%0Ab")  # found by schemathesis: was a text/plain 404
    error_shape(newline, 400, 3)
    assert newline.violated_fields == ["transaction_id"]
    assert (await stranger.browser.get("/v1/transactions")).json["transactions"] == []
    bad_page = await payer.browser.get("/v1/transactions", params={"page_token": "not-a-token"})
    error_shape(bad_page, 400, 3)
    assert bad_page.violated_fields == ["page_token"]
    not_a_number = await payer.browser.get("/v1/transactions", params={"page_size": "ten"})
    assert not_a_number.status == 400 and not_a_number.json["code"] == 3  # refused by the bridge


async def test_withdrawal_quoted_then_confirmed_with_the_emailed_code(surface: Surface, payer: User) -> None:
    started = await payer.browser.post(
        "/v1/withdrawals", {"amount_cents": "2000", "currency": "USD"}, headers=key()
    )
    assert started.status == 200, started.json
    tx = started.json["transaction"]
    assert tx["type"] == "TRANSACTION_TYPE_WITHDRAWAL" and tx["status"] == "awaiting_withdrawal_code"
    assert started.json["quoted_payout"] == {"amount_cents": "256000", "currency": "KES"}  # 128 KES/USD

    confirmed = await payer.browser.post(
        f"/v1/withdrawals/{tx['transaction_id']}:confirm",
        {"verification_code": mailed_code(surface)},
        headers=key(),
    )
    assert confirmed.status == 200, confirmed.json
    assert confirmed.json["transaction"]["transaction_id"] == tx["transaction_id"]
    assert confirmed.json["transaction"]["status"] == "mpesa_disbursement_sent"  # debited, payout reserved

    # A rejected code fails its withdrawal: another one for the refusal.
    other = await payer.browser.post(
        "/v1/withdrawals", {"amount_cents": "1500", "currency": "USD"}, headers=key()
    )
    tx = other.json["transaction"]
    wrong = await payer.browser.post(
        f"/v1/withdrawals/{tx['transaction_id']}:confirm", {"verification_code": "WRONGCODE1"}, headers=key()
    )
    error_shape(wrong, 400, 3)
    assert wrong.reason == "VERIFICATION_CODE_REJECTED" and wrong.violated_fields == ["verification_code"]


async def test_money_moves_only_for_a_verified_user(surface: Surface) -> None:
    unverified = await surface.sign_up()
    refused = await unverified.browser.post(
        "/v1/withdrawals", {"amount_cents": "2000", "currency": "USD"}, headers=key()
    )
    error_shape(refused, 400, 9)  # FAILED_PRECONDITION -> 400, as grpc-gateway maps it
    assert refused.reason == "COMPLIANCE_REFUSED"
    assert refused.detail("ErrorInfo")["metadata"]["rule"] == "PHONE_NOT_VERIFIED"
    assert await surface.count(transactions) == 0


async def test_json_the_document_refuses_is_refused(surface: Surface, payer: User) -> None:
    # Found by schemathesis: proto JSON's parser read a null as "unset" and a string or an array as an
    # empty message, where /openapi.json says string and object. The bridge now refuses them.
    null = await payer.browser.post(
        "/v1/deposits", {"amount_cents": "130000", "currency": None}, headers=key()
    )
    assert null.status == 400 and null.json["code"] == 3
    assert null.json["message"] == "body: currency: null is not allowed"
    bodies: tuple[Any, ...] = ([], "", "KES")
    for body in bodies:
        not_an_object = await payer.browser.call("POST", "/v1/deposits", body=body, headers=key())
        assert (
            not_an_object.status == 400
            and not_an_object.json["message"] == "body: the body must be a JSON object"
        )
    assert await surface.count(transactions) == 0
    # An int64 may still come as a JSON number, as proto JSON allows (penpay demo sends amounts so).
    accepted = await payer.browser.post(
        "/v1/deposits", {"amount_cents": 130000, "currency": "KES"}, headers=key()
    )
    assert accepted.status == 200 and accepted.json["transaction"]["amount"]["amount_cents"] == "130000"


# --- amounts the Deriv payment agent would refuse (USD 10 to 2,000 per transfer) -----------------------


async def test_a_deposit_converting_below_deriv_s_minimum_is_refused_before_anything_is_written(
    on_mariadb: Surface,
) -> None:
    surface = on_mariadb
    payer = await surface.payer()
    before = await fingerprint(surface.core.engine)
    same = key()
    too_small = {"amount_cents": "65000", "currency": "KES"}  # KES 650 = USD 5.00 at 130 KES/USD

    refused = await payer.browser.post("/v1/deposits", too_small, headers=same)

    error_shape(refused, 400, 3)  # INVALID_ARGUMENT
    message = (
        "deposits must convert to between USD 10.00 and USD 2,000.00; KES 650.00 converts to USD 5.00"
        " at the quoted rate (deposit at least KES 1,300.00)"
    )
    assert refused.json["message"] == message
    assert refused.reason == "DERIV_AMOUNT_OUT_OF_RANGE"
    assert refused.detail("ErrorInfo")["metadata"] == {"field": "amount_cents"}
    assert refused.detail("BadRequest")["field_violations"] == [
        {"field": "amount_cents", "description": message}
    ]
    # Nothing changed: no transaction, no event for the saga (so no STK push), no audit row, no
    # compliance check, and no stored answer: nothing was executed, so the key stays free.
    after = await fingerprint(surface.core.engine)
    assert before.changed_tables(after) == []
    assert after.last_audit_id == before.last_audit_id

    again = await payer.browser.post("/v1/deposits", too_small, headers=same)
    assert again.status == 400 and again.raw == refused.raw  # judged again, the same way
    # The corrected amount under the same key starts the deposit.
    corrected = {"amount_cents": "130000", "currency": "KES"}
    started = await payer.browser.post("/v1/deposits", corrected, headers=same)
    assert started.status == 200, started.json
    assert started.json["transaction"]["converted_amount"] == {"amount_cents": "1000", "currency": "USD"}


async def test_a_withdrawal_of_usd_5_is_refused_before_deriv_emails_a_code(on_mariadb: Surface) -> None:
    surface = on_mariadb
    payer = await surface.payer()
    mails = len(surface.gateway.simulator.engine.books.mailbox)
    before = await fingerprint(surface.core.engine)

    refused = await payer.browser.post(
        "/v1/withdrawals", {"amount_cents": "500", "currency": "USD"}, headers=key()
    )

    error_shape(refused, 400, 3)
    assert refused.reason == "DERIV_AMOUNT_OUT_OF_RANGE" and refused.violated_fields == ["amount_cents"]
    assert refused.json["message"] == (
        "withdrawals must be between USD 10.00 and USD 2,000.00; USD 5.00 is below the minimum"
    )
    after = await fingerprint(surface.core.engine)
    assert before.changed_tables(after) == []  # the key not kept either
    assert after.last_audit_id == before.last_audit_id
    assert len(surface.gateway.simulator.engine.books.mailbox) == mails  # no verification code asked for

"""What the fuzz tests found, each pinned by the smallest input that showed it (fixed in the adapters).

M-Pesa callbacks: a 500 for a ResultCode no INTEGER column holds, for an amount of 1e999999 (Decimal
overflow), for a ResultCode of a million digits, and for a lone surrogate escape (no database encoding
holds one); an amount 10^-31 above the stored one was accepted as equal (Decimal rounds to 28 digits);
the path secret sent to a wrong path was written to the access log.
Deriv gateway: requests it should have refused were journaled and sent to Deriv (a trailing newline in
an id or loginid, a currency other than the agent's, a malformed verification code or token), or failed
with INTERNAL (a loginid or currency longer than the journal's columns); amounts above 2^53 went out
rounded; undecodable request bytes were answered UNKNOWN.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from typing import Any

import grpc
import pytest

from deriv_gateway.server import SERVICE_NAME
from mpesa_adapter.callback_store import FAILED, SENT
from mpesa_adapter.routes import PATHS, CallbackKind
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from tests.deriv_gateway.conftest import FrameLog, Sim
from tests.fuzz.daraja_mutations import Kind
from tests.fuzz.gateway_harness import CLIENT, FAKE_CODE, TOKEN, Gateway, books, money_frames, usd
from tests.fuzz.mpesa_harness import Genuine, genuine_stk, post, row_of
from tests.mpesa_adapter.conftest import Harness

pytestmark = pytest.mark.integration

STK = PATHS[CallbackKind.STK]


def stk_body(genuine: Genuine, **changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(genuine.body)
    body["Body"]["stkCallback"].update(changes)
    return body


def with_amount(genuine: Genuine, literal: str) -> bytes:
    """The genuine body with its Amount written as this JSON number literal."""
    body = copy.deepcopy(genuine.body)
    for item in body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]:
        if item["Name"] == "Amount":
            item["Value"] = "@AMOUNT@"
    return json.dumps(body).replace('"@AMOUNT@"', literal).encode()


async def reviews(h: Harness, correlation_id: str) -> list[str]:
    return [r.reason for r in await h.reviews(correlation_id)]


async def test_a_failure_code_no_integer_column_holds_is_kept_in_the_description(h: Harness) -> None:
    genuine = await genuine_stk(h)
    failure = stk_body(genuine, ResultCode=2**31, ResultDesc="odd")
    del failure["Body"]["stkCallback"]["CallbackMetadata"]
    assert await post(h, STK, json.dumps(failure).encode()) == 200
    row = await row_of(h, Kind.STK, genuine.correlation_id)
    assert (row.status, row.result_code, row.result_desc) == (FAILED, None, "[2147483648] odd")


NOT_THE_STORED_AMOUNT = (
    "1e999999",  # Decimal arithmetic overflowed: HTTP 500
    "80.0000000000000000000000000000001",  # rounded to 28 digits it equalled 80: accepted as paid
)


async def test_an_amount_that_is_not_the_stored_one_is_a_mismatch(h: Harness) -> None:
    for literal in NOT_THE_STORED_AMOUNT:
        genuine = await genuine_stk(h)  # stored: 80 KES
        assert await post(h, STK, with_amount(genuine, literal)) == 200, literal
        assert (await row_of(h, Kind.STK, genuine.correlation_id)).status == SENT, literal
        assert await reviews(h, genuine.correlation_id) == ["AMOUNT_MISMATCH"], literal


MALFORMED_VALUES = (
    ("ResultCode", "1e999999"),  # str(int(...)) of a million digits raised ValueError: HTTP 500
    ("ResultDesc", '"\\ud800 not unicode"'),  # no database encoding holds it: HTTP 500
    ("CheckoutRequestID", '"ws_CO_\\udfff"'),
)


async def test_malformed_values_are_400_and_settle_nothing(h: Harness) -> None:
    for field, literal in MALFORMED_VALUES:
        genuine = await genuine_stk(h)
        raw = json.dumps(stk_body(genuine, **{field: "@V@"})).replace('"@V@"', literal).encode()
        assert await post(h, STK, raw) == 400, field
        assert (await row_of(h, Kind.STK, genuine.correlation_id)).status == SENT, field
        malformed = [r for r in await h.reviews() if r.reason == "MALFORMED" and bytes(r.raw_body) == raw]
        assert len(malformed) == 1, field


async def test_the_path_secret_sent_to_a_wrong_path_is_not_logged(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    for path in ("/payments//stk", "/other/payments/stk", ""):
        assert await post(h, path, b"{}") == 404
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(access) == 3
    assert not [line for line in access if h.secret in line]
    assert all("/***" in line for line in access)


# --- Deriv gateway ---------------------------------------------------------------------------


def transfer(**changes: Any) -> pb.TransferRequest:
    fields: dict[str, Any] = {"transfer_id": str(uuid.uuid4()), "client_loginid": CLIENT, "amount": usd(1250)}
    return pb.TransferRequest(**(fields | changes))


def withdraw(**changes: Any) -> pb.WithdrawRequest:
    fields: dict[str, Any] = {
        "withdrawal_id": str(uuid.uuid4()),
        "client_token": TOKEN,
        "verification_code": FAKE_CODE,
        "amount": usd(1250),
    }
    return pb.WithdrawRequest(**(fields | changes))


INVALID = {
    "transfer id with a final newline": ("Transfer", transfer(transfer_id="abc-1\n")),
    "loginid with a final newline": ("Transfer", transfer(client_loginid=CLIENT + "\n")),
    "loginid longer than any": ("Transfer", transfer(client_loginid="CR" + "9" * 40)),
    "currency longer than three": ("Transfer", transfer(amount=usd(1250, "USDT"))),
    "currency not the agent's": ("Transfer", transfer(amount=usd(1250, "EUR"))),
    "amount not exact as a double": ("Transfer", transfer(amount=usd(2**63 - 1))),
    "resolve_only in another currency": ("Transfer", transfer(amount=usd(1250, "EUR"), resolve_only=True)),
    "malformed verification code": ("Withdraw", withdraw(verification_code="abc def")),
    "code with a final newline": ("Withdraw", withdraw(verification_code=FAKE_CODE + "\n")),
    "token with a final newline": ("Withdraw", withdraw(client_token=TOKEN + "\n")),
}


async def test_invalid_money_requests_are_refused_before_the_journal(
    gw: Gateway, sim: Sim, frames: FrameLog
) -> None:
    before = await books(sim)
    answers = {case: (await gw.call(method, request)).name for case, (method, request) in INVALID.items()}
    assert answers == dict.fromkeys(INVALID, "INVALID_ARGUMENT")
    assert money_frames(frames) == []
    assert await gw.journal_rows() == []
    assert await books(sim) == before


async def test_a_malformed_client_token_is_never_sent(gw: Gateway, frames: FrameLog) -> None:
    malformed = (TOKEN + " ", "t" * 129, "tøken")
    for method, request in [
        ("Authorize", pb.AuthorizeRequest(client_token=malformed[0])),
        ("GetSettings", pb.GetSettingsRequest(client_token=malformed[1])),
        ("RequestWithdrawalCode", pb.RequestWithdrawalCodeRequest(client_token=malformed[2])),
    ]:
        assert await gw.call(method, request) == grpc.StatusCode.INVALID_ARGUMENT, method
    assert not [f for d, f in frames.frames if d == "send" and f.get("authorize") in malformed]


async def test_a_bad_display_amount_sends_no_email(gw: Gateway, frames: FrameLog) -> None:
    for amount in (usd(-5), usd(1250, "usd"), usd(2**63 - 1)):
        request = pb.RequestWithdrawalCodeRequest(client_token=TOKEN, amount=amount)
        assert await gw.call("RequestWithdrawalCode", request) == grpc.StatusCode.INVALID_ARGUMENT
    assert frames.sent("verify_email") == []


async def test_undecodable_request_bytes_are_invalid_argument(gw: Gateway) -> None:
    base = f"/{SERVICE_NAME}/"
    with pytest.raises(grpc.aio.AioRpcError) as unary:
        await gw.channel.unary_unary(base + "Transfer")(b"\x00", timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as stream:
        async for _ in gw.channel.unary_stream(base + "WatchBalance")(b"\x00", timeout=10):
            pass
    assert unary.value.code() == stream.value.code() == grpc.StatusCode.INVALID_ARGUMENT

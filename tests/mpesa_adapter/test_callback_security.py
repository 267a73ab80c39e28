"""Forged, mismatching and malformed callbacks: recorded for review, never credited."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mpesa_adapter.callback_store import FAILED, SENT, SUCCEEDED
from mpesa_adapter.inbox import Outcome
from mpesa_adapter.routes import PATHS, CallbackKind
from tests.mpesa_adapter.conftest import Harness, build_harness, phone

pytestmark = pytest.mark.integration
STK = PATHS[CallbackKind.STK]
ACCEPTED = (200, {"ResultCode": 0, "ResultDesc": "Accepted"})


async def dropped_success(
    h: Harness, amount: int = 80, msisdn: str | None = None
) -> tuple[str, dict[str, Any]]:
    """A paid push whose callback the simulator did not deliver: (CheckoutRequestID, the genuine body)."""
    msisdn = msisdn or phone()
    h.sim.add_fault("drop", api="stk", phone=msisdn)
    _, checkout = await h.push(msisdn, amount)
    await h.drain()
    (entry,) = h.callbacks(checkout)
    return checkout, entry["body"]


def item(body: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    forged = copy.deepcopy(body)
    for entry in forged["Body"]["stkCallback"]["CallbackMetadata"]["Item"]:
        if entry["Name"] == name:
            entry["Value"] = value
    return forged


async def test_wrong_amount_phone_merchant_id_or_receipt_is_never_credited(h: Harness) -> None:
    checkout, genuine = await dropped_success(h)
    forged_bodies = {
        "AMOUNT_MISMATCH": item(genuine, "Amount", 8000.0),
        "PHONE_MISMATCH": item(genuine, "PhoneNumber", 254711111111),
        "RECEIPT_INVALID": item(genuine, "MpesaReceiptNumber", "nope"),
        "MERCHANT_ID_MISMATCH": copy.deepcopy(genuine),
    }
    forged_bodies["MERCHANT_ID_MISMATCH"]["Body"]["stkCallback"]["MerchantRequestID"] = "0000-forged"
    for body in forged_bodies.values():
        assert await h.post_raw(STK, body) == ACCEPTED  # same answer: nothing to learn for a forger
    assert h.inbox.of("stk") == [Outcome.MISMATCH] * 4
    assert (await h.request_row(checkout)).status == SENT  # left for the genuine callback
    reviews = await h.reviews(checkout)
    assert sorted(r.reason for r in reviews) == sorted(forged_bodies)
    assert all(r.remote_addr == "127.0.0.1" and r.status == "OPEN" for r in reviews)

    assert await h.post_raw(STK, genuine) == ACCEPTED
    assert (await h.request_row(checkout)).status == SUCCEEDED


async def test_reused_receipt_is_refused_by_the_unique_constraint(h: Harness) -> None:
    _, first_body = await dropped_success(h)
    second, second_body = await dropped_success(h)
    assert await h.post_raw(STK, first_body) == ACCEPTED
    receipt = next(
        i["Value"]
        for i in first_body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
        if i["Name"] == "MpesaReceiptNumber"
    )
    assert await h.post_raw(STK, item(second_body, "MpesaReceiptNumber", receipt)) == ACCEPTED
    assert h.inbox.of("stk") == [Outcome.SUCCESS_RECORDED, Outcome.MISMATCH]
    assert [r.reason for r in await h.reviews(second)] == ["RECEIPT_REUSED"]
    assert (await h.request_row(second)).status == SENT


async def test_a_different_result_for_a_settled_request_is_a_conflict(h: Harness) -> None:
    checkout, genuine = await dropped_success(h)
    assert await h.post_raw(STK, genuine) == ACCEPTED
    cancelled = {
        "Body": {
            "stkCallback": {
                k: genuine["Body"]["stkCallback"][k] for k in ("MerchantRequestID", "CheckoutRequestID")
            }
            | {"ResultCode": 1032, "ResultDesc": "Request cancelled by user"}
        }
    }
    assert await h.post_raw(STK, cancelled) == ACCEPTED
    assert h.inbox.of("stk") == [Outcome.SUCCESS_RECORDED, Outcome.CONFLICT]
    assert (await h.request_row(checkout)).status == SUCCEEDED
    assert [r.reason for r in await h.reviews(checkout)] == ["CONFLICTING_RESULT"]


async def test_wrong_path_secret_is_404_and_recorded(h: Harness) -> None:
    checkout, genuine = await dropped_success(h)
    status, _ = await h.post_raw(STK, genuine, secret="not-the-secret")
    assert status == 404
    assert h.inbox.of("stk") == []
    (review,) = [
        r for r in await h.reviews() if r.reason == "BAD_PATH_SECRET" and json.loads(r.raw_body) == genuine
    ]
    assert review.kind == "stk" and review.correlation_id is None
    assert (await h.request_row(checkout)).status == SENT


async def test_simulator_spoofed_callback_for_an_unknown_id(h: Harness) -> None:
    async with h.session.post(
        f"{h.sim.base_url}/__control__/stk/unknown-callback", json={"url": h.url(STK), "amount": 500}
    ) as resp:
        spoof = await resp.json()
    await h.drain()
    assert h.inbox.of("stk") == [Outcome.UNKNOWN]
    assert [r.reason for r in await h.reviews(spoof["CheckoutRequestID"])] == ["UNKNOWN_ID"]


async def test_allow_list_with_trusted_proxy(db: AsyncEngine) -> None:
    server = {"allowed_ips": "196.201.214.200, 196.201.212.0/24", "trusted_proxies": "127.0.0.1"}
    async for h in build_harness(db, server_overrides=server):
        checkout, genuine = await dropped_success(h)
        # Behind the (trusted) proxy, the caller is the right-most untrusted X-Forwarded-For entry.
        status, _ = await h.post_raw(STK, genuine, headers={"X-Forwarded-For": "196.201.214.200, 10.1.2.3"})
        assert status == 403
        status, _ = await h.post_raw(STK, genuine, headers={"X-Forwarded-For": "1.2.3.4"})
        assert status == 403
        assert h.inbox.of("stk") == []
        assert (await h.request_row(checkout)).status == SENT
        assert (
            await h.post_raw(STK, genuine, headers={"X-Forwarded-For": "6.6.6.6, 196.201.212.69"}) == ACCEPTED
        )
        assert h.inbox.of("stk") == [Outcome.SUCCESS_RECORDED]
        ip_reviews = [
            r for r in await h.reviews() if r.reason == "IP_NOT_ALLOWED" and json.loads(r.raw_body) == genuine
        ]
        assert sorted(r.remote_addr for r in ip_reviews) == ["1.2.3.4", "10.1.2.3"]


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(db: AsyncEngine) -> None:
    async for h in build_harness(db, server_overrides={"allowed_ips": "196.201.214.200"}):
        checkout, genuine = await dropped_success(h)
        status, _ = await h.post_raw(STK, genuine, headers={"X-Forwarded-For": "196.201.214.200"})
        assert status == 403  # the peer 127.0.0.1 is no trusted proxy: its header means nothing
        assert (await h.request_row(checkout)).status == SENT
        # The simulator's own delivery (from 127.0.0.1) is refused the same way.
        _, checkout2 = await h.push(phone(), 10)
        await h.drain()
        assert [c["status"] for c in h.callbacks(checkout2)] == [403]


async def test_allow_list_in_log_only_mode_records_and_processes(db: AsyncEngine) -> None:
    server = {"allowed_ips": "196.201.214.200", "enforce_allowlist": False}
    async for h in build_harness(db, server_overrides=server):
        _, checkout = await h.push(phone(), 10)
        await h.drain()
        assert (await h.request_row(checkout)).status == SUCCEEDED
        # the review of this push's callback (the database is shared: other tests' reviews are there too)
        ours = [r.reason for r in await h.reviews() if checkout.encode() in bytes(r.raw_body)]
        assert ours == ["IP_NOT_ALLOWED"]


MALFORMED: dict[str, bytes] = {
    "duplicate key": b'{"Body": {"stkCallback": {"CheckoutRequestID": "a", "CheckoutRequestID": "b"}}}',
    "NaN": b'{"Body": {"stkCallback": {"ResultCode": NaN}}}',
    "Infinity": b'{"Body": {"stkCallback": {"ResultCode": Infinity}}}',
    "array": b"[1, 2, 3]",
    "string": b'"hello"',
    "not json": b"ResultCode=0",
    "not utf-8": b'{"Body": "\xff\xfe"}',
    "extra top key": b'{"Body": {"stkCallback": {}}, "Extra": 1}',
    "missing ids": b'{"Body": {"stkCallback": {"ResultCode": 0, "ResultDesc": "x"}}}',
    "ResultCode bool": b'{"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "c", '
    b'"ResultCode": true, "ResultDesc": "x"}}}',
    "Item not list": b'{"Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "c", '
    b'"ResultCode": 0, "ResultDesc": "x", "CallbackMetadata": {"Item": "x"}}}}',
    "deep nesting": b"[" * 30_000 + b"]" * 30_000,
}


async def test_malformed_bodies_are_400_and_recorded(h: Harness) -> None:
    for name, raw in MALFORMED.items():
        status, _ = await h.post_raw(STK, raw)
        assert status == (413 if len(raw) > h.server_config.max_body_bytes else 400), name
    assert h.inbox.of("stk") == []
    malformed = [r for r in await h.reviews() if r.reason == "MALFORMED" and r.remote_addr == "127.0.0.1"]
    assert {bytes(r.raw_body) for r in malformed} >= {raw for raw in MALFORMED.values() if len(raw) < 65536}

    b2c_wrong_shape: dict[str, Any] = {"Body": {"stkCallback": {}}}
    assert (await h.post_raw(PATHS[CallbackKind.B2C_RESULT], b2c_wrong_shape))[0] == 400


async def test_oversized_body_is_refused(h: Harness) -> None:
    big = b'{"Body": "' + b"x" * 70_000 + b'"}'
    status, _ = await h.post_raw(STK, big)
    assert status == 413


async def test_failed_result_then_same_failure_again_is_a_duplicate(h: Harness) -> None:
    msisdn = phone()
    h.sim.add_fault("duplicate", api="stk", phone=msisdn)
    h.sim.set_outcome("stk", 1037, phone=msisdn)
    _, checkout = await h.push(msisdn, 10)
    await h.drain()
    assert h.inbox.of("stk") == [Outcome.FAILURE_RECORDED, Outcome.DUPLICATE]
    assert (await h.request_row(checkout)).status == FAILED

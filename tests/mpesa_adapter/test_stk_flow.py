"""STK Push -> callback -> confirmation, against the simulator, with storage on MariaDB."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncGenerator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.payments.stk_evidence import QueryEffect, StkQueryAnswer
from mpesa_adapter.callback_store import CONFIRMED, FAILED, SENT, SUCCEEDED
from mpesa_adapter.confirmer import Verdict
from mpesa_adapter.inbox import Outcome
from mpesa_adapter.routes import PATHS, CallbackKind
from mpesa_adapter.types import StkQueryStatus
from persistence.tables import audit_logs, audit_pending, domain_events, mpesa_requests
from tests.mpesa_adapter.conftest import Harness, build_harness, make_engine, phone

pytestmark = pytest.mark.integration
STK = PATHS[CallbackKind.STK]


async def test_success_callback_is_recorded_then_confirmed_by_stk_query(h: Harness) -> None:
    msisdn = phone()
    tx_id, checkout = await h.push(msisdn, 150)
    await h.drain()

    assert h.inbox.of("stk") == [Outcome.SUCCESS_RECORDED]
    row = await h.request_row(checkout)
    assert row.status == SUCCEEDED and row.result_code == 0
    book = h.sim.engine.books.stk[checkout]
    assert row.mpesa_receipt_number == book.receipt
    raw = json.loads(row.raw_callback)  # the evidence, byte-for-byte what was received
    assert raw["Body"]["stkCallback"]["CheckoutRequestID"] == checkout
    events = await h.events(tx_id)
    assert [e.event_type for e in events] == ["MpesaCallbackReceived"]
    assert events[0].stream == "penpay.payments" and events[0].aggregate_version == 2
    # The evidence goes through the audit chain like every other money change (sealed or pending).
    audited = [
        await h.count(t, t.c.action == "MpesaCallbackReceived", t.c.subject_id == str(tx_id))
        for t in (audit_logs, audit_pending)
    ]
    assert sum(audited) == 1

    first = await h.confirmer.confirm_stk(checkout)
    again = await h.confirmer.confirm_stk(checkout)
    assert (first.verdict, first.newly_confirmed) == (Verdict.CONFIRMED, True)
    assert (again.verdict, again.newly_confirmed) == (Verdict.CONFIRMED, False)
    assert (await h.request_row(checkout)).status == CONFIRMED


async def test_same_success_delivered_five_times_concurrently_credits_once(fresh_mariadb_url: str) -> None:
    engine: AsyncEngine = await make_engine(fresh_mariadb_url)
    harness: AsyncGenerator[Harness, None] = build_harness(engine)
    h = await anext(harness)
    try:
        msisdn = phone()
        h.sim.add_fault("drop", api="stk", phone=msisdn)  # the simulator moves the money, we deliver
        tx_id, checkout = await h.push(msisdn, 700)
        await h.drain()
        (dropped,) = h.callbacks(checkout)
        body = dropped["body"]

        results = await asyncio.gather(*(h.post_raw(STK, body) for _ in range(5)))
        assert results == [(200, {"ResultCode": 0, "ResultDesc": "Accepted"})] * 5
        outcomes = h.inbox.of("stk")
        assert outcomes.count(Outcome.SUCCESS_RECORDED) == 1 and outcomes.count(Outcome.DUPLICATE) == 4

        confirmations = await asyncio.gather(*(h.confirmer.confirm_stk(checkout) for _ in range(5)))
        assert all(c.verdict == Verdict.CONFIRMED for c in confirmations)
        credits = [c for c in confirmations if c.newly_confirmed]
        assert len(credits) == 1  # exactly one caller gets to credit

        assert await h.count(mpesa_requests, mpesa_requests.c.status == CONFIRMED) == 1
        assert await h.count(mpesa_requests) == 1
        assert await h.count(domain_events, domain_events.c.aggregate_id == str(tx_id)) == 1
        assert await h.reviews() == []
        assert h.sim.books["stk"]["total_charged"] == 700
    finally:
        await harness.aclose()
        await engine.dispose()


async def test_simulator_duplicate_fault_changes_nothing_the_second_time(h: Harness) -> None:
    msisdn = phone()
    h.sim.add_fault("duplicate", api="stk", phone=msisdn, copies=3)
    _, checkout = await h.push(msisdn, 20)
    await h.drain()
    assert [c["status"] for c in h.callbacks(checkout)] == [200, 200, 200]
    assert h.inbox.of("stk") == [Outcome.SUCCESS_RECORDED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert (await h.request_row(checkout)).status == SUCCEEDED


STK_FAILURES: list[int | str] = [
    1,
    2,
    3,
    4,
    8,
    17,
    26,
    1001,
    1019,
    1025,
    1032,
    1037,
    2001,
    2028,
    8006,
    9999,
    "SFC_IC0003",
]


async def test_every_failure_result_code_is_recorded_as_failed(h: Harness) -> None:
    phones = {code: phone() for code in STK_FAILURES}
    for code, msisdn in phones.items():
        h.sim.set_outcome("stk", code, phone=msisdn)
    pushed = await asyncio.gather(*(h.push(msisdn, 10) for msisdn in phones.values()))
    await h.drain()
    assert h.inbox.of("stk") == [Outcome.FAILURE_RECORDED] * len(STK_FAILURES)
    for code, (_, checkout) in zip(phones, pushed, strict=True):
        row = await h.request_row(checkout)
        assert row.status == FAILED
        if isinstance(code, int):
            assert row.result_code == code
        else:  # a non-numeric code cannot live in the INTEGER column: it is kept in result_desc
            assert row.result_code is None and row.result_desc.startswith(f"[{code}]")
        assert row.mpesa_receipt_number is None
        query = await h.client.stk_query(checkout)
        assert query.status == StkQueryStatus.FAILED and query.result_code == str(code)
    assert h.sim.books["stk"]["total_charged"] == 0


async def test_phone_rule_outcomes(h: Harness) -> None:
    """The simulator's phone-number rules: the last four digits pick the result code."""
    cancelled, wrong_pin = phone("1032"), phone("2001")
    pushed = [await h.push(cancelled, 10), await h.push(wrong_pin, 10)]
    await h.drain()
    rows = [await h.request_row(c) for _, c in pushed]
    assert [(r.status, r.result_code) for r in rows] == [(FAILED, 1032), (FAILED, 2001)]


async def test_stk_query_being_processed_is_pending(h: Harness) -> None:
    msisdn = phone()
    h.sim.add_fault("delay", api="stk", phone=msisdn, seconds=1.5)
    _, checkout = await h.push(msisdn, 30)
    query = await h.client.stk_query(checkout)
    assert query.status == StkQueryStatus.PENDING  # HTTP 500 "being processed" is not a failure
    assert (await h.confirmer.confirm_stk(checkout)).verdict == Verdict.PENDING
    assert (await h.request_row(checkout)).status == SENT
    unknown = await h.client.stk_query("ws_CO_01012026000000000700000000")
    assert unknown.status == StkQueryStatus.UNKNOWN
    await h.drain()
    assert (await h.client.stk_query(checkout)).status == StkQueryStatus.COMPLETED
    assert (await h.request_row(checkout)).status == SUCCEEDED


async def test_lost_callback_is_settled_by_stk_query(h: Harness) -> None:
    paid, cancelled = phone(), phone()
    h.sim.add_fault("drop", api="stk", phone=paid)
    h.sim.add_fault("drop", api="stk", phone=cancelled)
    h.sim.set_outcome("stk", 1032, phone=cancelled)
    _, paid_id = await h.push(paid, 40)
    _, cancelled_id = await h.push(cancelled, 40)
    await h.drain()
    assert h.inbox.of("stk") == []

    confirmed = await h.confirmer.confirm_stk(paid_id)
    assert (confirmed.verdict, confirmed.newly_confirmed) == (Verdict.CONFIRMED, True)
    row = await h.request_row(paid_id)
    assert row.status == CONFIRMED and row.mpesa_receipt_number is None  # STK Query has no receipt
    assert (await h.confirmer.confirm_stk(cancelled_id)).verdict == Verdict.FAILED
    assert (await h.request_row(cancelled_id)).result_code == 1032

    # The callback, if it turns up after all, adds the receipt and credits nothing new.
    (dropped,) = h.callbacks(paid_id)
    assert await h.post_raw(STK, dropped["body"]) == (200, {"ResultCode": 0, "ResultDesc": "Accepted"})
    assert h.inbox.of("stk") == [Outcome.DUPLICATE]
    row = await h.request_row(paid_id)
    assert row.status == CONFIRMED and row.mpesa_receipt_number == h.sim.engine.books.stk[paid_id].receipt


async def test_late_and_out_of_order_callbacks(h: Harness) -> None:
    late, held, normal = phone(), phone(), phone()
    h.sim.add_fault("late", api="stk", phone=late)
    h.sim.add_fault("out_of_order", api="stk", phone=held)
    ids = [await h.push(p, 50) for p in (late, held, normal)]
    await h.drain()
    assert h.inbox.of("stk") == [Outcome.SUCCESS_RECORDED] * 3
    for _, checkout in ids:
        assert (await h.request_row(checkout)).status == SUCCEEDED
    # Out of order: the held callback arrived after the one of the later push.
    order = [c["ref"] for c in h.sim.callbacks if c["kind"] == "stk_callback"]
    assert order.index(ids[1][1]) > order.index(ids[2][1])


async def test_unknown_callbacks_are_recorded_for_review_and_never_credited(h: Harness) -> None:
    msisdn = phone()
    h.sim.add_fault("unknown_callback", api="stk", phone=msisdn)
    _, checkout = await h.push(msisdn, 60)
    await h.drain()
    assert sorted(h.inbox.of("stk")) == sorted([Outcome.SUCCESS_RECORDED, Outcome.UNKNOWN])
    (spoof,) = [c for c in h.sim.callbacks if c["kind"] == "stk_callback_unknown"]
    reviews = await h.reviews(spoof["ref"])
    assert [(r.reason, r.kind, r.transaction_id) for r in reviews] == [("UNKNOWN_ID", "stk", None)]
    assert json.loads(reviews[0].raw_body) == spoof["body"]
    assert (await h.request_row(checkout)).status == SUCCEEDED  # the genuine one is unaffected


async def test_a_masked_phone_number_is_checked_on_its_visible_digits(db: AsyncEngine) -> None:
    async for h in build_harness(db, sim_overrides={"mask_phone_numbers": True}):
        _, checkout = await h.push(phone(), 25)
        await h.drain()
        assert h.inbox.of("stk") == [Outcome.SUCCESS_RECORDED]  # the simulator's masked number agrees
        raw = json.loads((await h.request_row(checkout)).raw_callback)
        items = {i["Name"]: i.get("Value") for i in raw["Body"]["stkCallback"]["CallbackMetadata"]["Item"]}
        assert str(items["PhoneNumber"]).endswith("***")

        # The same answer showing another number's digits is about someone else: kept for a person.
        msisdn = phone()
        h.sim.add_fault("drop", api="stk", phone=msisdn)
        _, other = await h.push(msisdn, 30)
        await h.drain()
        (dropped,) = h.callbacks(other)
        genuine = dropped["body"]
        foreign = copy.deepcopy(genuine)
        for entry in foreign["Body"]["stkCallback"]["CallbackMetadata"]["Item"]:
            if entry["Name"] == "PhoneNumber":
                assert str(entry["Value"]) == f"0{msisdn[3:9]}***"
                entry["Value"] = f"0{int(msisdn[3:9]) + 1:06d}***"
        assert await h.post_raw(STK, foreign) == (200, {"ResultCode": 0, "ResultDesc": "Accepted"})
        assert h.inbox.of("stk")[-1] == Outcome.MISMATCH
        assert [r.reason for r in await h.reviews(other)] == ["PHONE_MISMATCH"]
        assert (await h.request_row(other)).status == SENT
        assert await h.post_raw(STK, genuine) == (200, {"ResultCode": 0, "ResultDesc": "Accepted"})
        assert (await h.request_row(other)).status == SUCCEEDED


async def test_confirmation_contradicted_by_stk_query_goes_to_review(h: Harness) -> None:
    msisdn = phone()
    h.sim.add_fault("drop", api="stk", phone=msisdn)
    h.sim.set_outcome("stk", 1032, phone=msisdn)
    _, checkout = await h.push(msisdn, 45)
    await h.drain()
    # A forged "paid" callback with the right ids, amount and a plausible receipt (e.g. from a leaked
    # secret path) is recorded as a success, but confirmation by STK Query refuses it.
    book = h.sim.engine.books.stk[checkout]
    forged = {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": book.merchant_request_id,
                "CheckoutRequestID": checkout,
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": 45.0},
                        {"Name": "MpesaReceiptNumber", "Value": "UKZ0FORGED"},
                        {"Name": "PhoneNumber", "Value": int(msisdn)},
                    ]
                },
            }
        }
    }
    assert (await h.post_raw(STK, forged))[0] == 200
    assert h.inbox.of("stk") == [Outcome.SUCCESS_RECORDED]
    verdict = await h.confirmer.confirm_stk(checkout)
    assert (verdict.verdict, verdict.newly_confirmed) == (Verdict.MISMATCH, False)
    assert (await h.request_row(checkout)).status == "REVIEW"
    assert [r.reason for r in await h.reviews(checkout)] == ["CONFIRMATION_MISMATCH"]


async def test_a_query_answer_never_overwrites_a_callback_recorded_after_its_read(h: Harness) -> None:
    """The confirmer reads the request, asks STK Query, then records the answer on what it read. A
    callback recorded in between grew the transaction's version: the answer is judged again on the
    fresh evidence instead of overwriting it (here: paid by callback, "not paid" by the query is a
    contradiction for review, never FAILED over SUCCEEDED)."""
    msisdn = phone()
    h.sim.add_fault("drop", api="stk", phone=msisdn)
    _, checkout = await h.push(msisdn, 60)
    await h.drain()
    read = await h.store.stk_request(checkout)
    assert read is not None and read.status == SENT
    (dropped,) = h.callbacks(checkout)
    assert (await h.post_raw(STK, dropped["body"]))[0] == 200
    assert (await h.request_row(checkout)).status == SUCCEEDED

    answer = StkQueryAnswer(paid=False, result_code=1032, result_desc="cancelled", evidence="{}")
    result = await h.store.stk_query_answered(checkout, answer, read=read)
    assert (result.effect, result.newly_confirmed) == (QueryEffect.CONTRADICTED, False)
    row = await h.request_row(checkout)
    assert (row.status, row.mpesa_receipt_number) == ("REVIEW", h.sim.engine.books.stk[checkout].receipt)
    assert [r.reason for r in await h.reviews(checkout)] == ["CONFIRMATION_MISMATCH"]

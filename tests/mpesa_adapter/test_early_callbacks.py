"""An STK callback that arrives before the saga stored the push's answer: parked as unknown, then adopted
once the request row exists (simulator and callback endpoint over sockets; MariaDB, and SQLite too)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest

from mpesa_adapter.callback_store import SENT, SUCCEEDED
from mpesa_adapter.confirmer import Verdict
from mpesa_adapter.inbox import Outcome
from mpesa_adapter.types import StkPushAccepted
from persistence.tables import domain_events
from tests.mpesa_adapter.conftest import Harness, build_harness, make_engine, phone

pytestmark = pytest.mark.integration

ADOPTED_BY = "penpay:adopted-early-callback"


@pytest.fixture(params=["mariadb", "sqlite"])
def either_url(request: pytest.FixtureRequest) -> str:
    """MariaDB (row locks) or SQLite (BEGIN IMMEDIATE): the two databases PenPay runs on."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
async def on_either(either_url: str) -> AsyncIterator[Harness]:
    engine = await make_engine(either_url)
    try:
        async for harness in build_harness(engine):
            yield harness
    finally:
        await engine.dispose()


async def push_before_storing(h: Harness, msisdn: str, amount_kes: int) -> tuple[uuid.UUID, StkPushAccepted]:
    """The race: the push is answered and its callback delivered before the saga commits the answer."""
    tx_id = await h.new_transaction(msisdn, amount_kes * 100)
    accepted = await h.client.stk_push(phone=msisdn, amount_cents=amount_kes * 100, account_reference="PP1")
    await h.drain()
    return tx_id, accepted


async def test_a_callback_that_beat_the_stored_answer_is_adopted_as_evidence(on_either: Harness) -> None:
    h = on_either
    msisdn = phone()
    tx_id, accepted = await push_before_storing(h, msisdn, 150)
    checkout = accepted.checkout_request_id
    assert h.inbox.of("stk") == [Outcome.UNKNOWN]
    (parked,) = await h.reviews(checkout)
    assert (parked.reason, parked.status, parked.transaction_id) == ("UNKNOWN_ID", "OPEN", None)
    assert await h.store.adopt_early_stk_callbacks(checkout) == ()  # no request row yet: stays parked
    assert (await h.reviews(checkout))[0].status == "OPEN"

    await h.store_request(tx_id, checkout, accepted.merchant_request_id, msisdn, 150)
    assert await h.store.adopt_early_stk_callbacks(checkout) == (Outcome.SUCCESS_RECORDED,)

    row = await h.request_row(checkout)
    assert row.status == SUCCEEDED and row.result_code == 0
    assert row.mpesa_receipt_number == h.sim.engine.books.stk[checkout].receipt
    assert row.raw_callback.encode() == parked.raw_body  # the evidence is the bytes received
    events = await h.events(tx_id)
    assert [e.event_type for e in events] == ["MpesaCallbackReceived"]
    payload = json.loads(events[0].payload)
    assert (payload["result_code"], payload["mpesa_receipt_number"]) == (0, row.mpesa_receipt_number)
    assert events[0].aggregate_version == 2  # the aggregate's version grew with the evidence
    (resolved,) = await h.reviews(checkout)
    assert (resolved.status, resolved.resolved_by, resolved.transaction_id) == ("ADOPTED", ADOPTED_BY, tx_id)
    assert resolved.resolved_at is not None

    assert await h.store.adopt_early_stk_callbacks(checkout) == ()  # a second adoption changes nothing
    assert len(await h.events(tx_id)) == 1
    confirmed = await h.confirmer.confirm_stk(checkout)
    assert (confirmed.verdict, confirmed.newly_confirmed) == (Verdict.CONFIRMED, True)


async def test_a_parked_callback_with_another_amount_is_adopted_into_review_not_evidence(h: Harness) -> None:
    msisdn = phone()
    tx_id, accepted = await push_before_storing(h, msisdn, 150)
    checkout = accepted.checkout_request_id
    await h.store_request(tx_id, checkout, accepted.merchant_request_id, msisdn, 151)  # we asked for 151

    assert await h.store.adopt_early_stk_callbacks(checkout) == (Outcome.MISMATCH,)

    row = await h.request_row(checkout)
    assert row.status == SENT and row.mpesa_receipt_number is None
    assert await h.events(tx_id) == []
    reviews = {r.reason: r for r in await h.reviews(checkout)}
    assert set(reviews) == {"UNKNOWN_ID", "AMOUNT_MISMATCH"}
    assert (reviews["UNKNOWN_ID"].status, reviews["UNKNOWN_ID"].resolved_by) == ("ADOPTED", ADOPTED_BY)
    mismatch = reviews["AMOUNT_MISMATCH"]
    assert (mismatch.status, mismatch.transaction_id, mismatch.resolved_at) == ("OPEN", tx_id, None)
    assert mismatch.raw_body == reviews["UNKNOWN_ID"].raw_body
    assert mismatch.received_at == reviews["UNKNOWN_ID"].received_at  # when it really arrived


async def test_a_parked_callback_delivered_twice_is_recorded_once(h: Harness) -> None:
    msisdn = phone()
    h.sim.add_fault("duplicate", api="stk", phone=msisdn, copies=2)
    tx_id, accepted = await push_before_storing(h, msisdn, 40)
    checkout = accepted.checkout_request_id
    assert h.inbox.of("stk") == [Outcome.UNKNOWN, Outcome.UNKNOWN]
    await h.store_request(tx_id, checkout, accepted.merchant_request_id, msisdn, 40)

    assert await h.store.adopt_early_stk_callbacks(checkout) == (Outcome.SUCCESS_RECORDED, Outcome.DUPLICATE)

    assert [r.status for r in await h.reviews(checkout)] == ["ADOPTED", "ADOPTED"]
    assert await h.count(domain_events, domain_events.c.aggregate_id == str(tx_id)) == 1


async def test_workers_adopting_at_once_take_the_callback_in_once(h: Harness) -> None:
    msisdn = phone()
    tx_id, accepted = await push_before_storing(h, msisdn, 75)
    checkout = accepted.checkout_request_id
    await h.store_request(tx_id, checkout, accepted.merchant_request_id, msisdn, 75)

    results = await asyncio.gather(*(h.store.adopt_early_stk_callbacks(checkout) for _ in range(5)))

    assert sorted(results) == [(), (), (), (), (Outcome.SUCCESS_RECORDED,)]
    assert await h.count(domain_events, domain_events.c.aggregate_id == str(tx_id)) == 1
    assert (await h.request_row(checkout)).status == SUCCEEDED

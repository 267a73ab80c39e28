"""The idempotency contract on HTTP, against the real InitiateDeposit (IETF Idempotency-Key draft):
the header is required, a repeat replays the first body, a repeat while the first is in flight gets
409, the same key with another body 422, a refusal that wrote nothing leaves the key free for the
corrected body, and after 24 h (a FixedClock moved forward) the key no longer binds the request,
while the transaction table still holds one transaction per key."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import pytest

from persistence.tables import idempotency_keys, transactions
from tests.api.conftest import PASSWORD

from .conftest import Surface, User, error_shape

pytestmark = pytest.mark.integration

DAY = timedelta(hours=24)
DEPOSIT = {"amount_cents": "130000", "currency": "KES"}


def key() -> dict[str, str]:
    return {"Idempotency-Key": f"http-{secrets.token_hex(8)}"}


@pytest.fixture
async def payer(surface: Surface) -> User:
    return await surface.payer()


async def relogin(surface: Surface, user: User) -> None:
    """New cookies after the clock moved past the access token's expiry."""
    login = await user.browser.post(
        "/v1/sessions",
        {"login": user.email, "password": PASSWORD, "device_id": user.device_id, "device_name": "Web"},
    )
    assert login.status == 200, login.json


async def test_the_key_is_required(surface: Surface, payer: User) -> None:
    missing = await payer.browser.post("/v1/deposits", DEPOSIT)
    error_shape(missing, 400, 3)
    assert missing.reason == "IDEMPOTENCY_KEY_REQUIRED" and missing.violated_fields == ["idempotency_key"]
    too_long = await payer.browser.post("/v1/deposits", DEPOSIT, headers={"Idempotency-Key": "k" * 256})
    assert too_long.status == 400 and too_long.violated_fields == ["idempotency_key"]
    not_ascii = await payer.browser.post("/v1/deposits", DEPOSIT, headers={"Idempotency-Key": "kéy"})
    assert not_ascii.status == 400  # refused by the bridge: not printable ASCII
    assert await surface.count(transactions) == 0


async def test_a_repeat_replays_the_first_body(surface: Surface, payer: User) -> None:
    same = key()
    first = await payer.browser.post("/v1/deposits", DEPOSIT, headers=same)
    second = await payer.browser.post("/v1/deposits", DEPOSIT, headers=same)
    assert first.status == second.status == 200
    assert second.raw == first.raw
    assert await surface.count(transactions) == 1


async def test_a_refusal_that_wrote_nothing_leaves_the_key_for_the_corrected_body(
    surface: Surface, payer: User
) -> None:
    same = key()
    refused = await payer.browser.post("/v1/deposits", {**DEPOSIT, "currency": "USD"}, headers=same)
    again = await payer.browser.post("/v1/deposits", {**DEPOSIT, "currency": "USD"}, headers=same)
    assert refused.status == again.status == 400 and refused.violated_fields == ["currency"]
    assert (
        again.json["details"] == refused.json["details"] and again.json["message"] == refused.json["message"]
    )
    assert await surface.count(idempotency_keys) == 0  # not stored: judged again each time

    corrected = await payer.browser.post("/v1/deposits", DEPOSIT, headers=same)
    assert corrected.status == 200, corrected.json
    replay = await payer.browser.post("/v1/deposits", DEPOSIT, headers=same)
    assert replay.raw == corrected.raw
    assert await surface.count(transactions) == 1


async def test_a_repeat_while_the_first_is_in_flight_gets_the_same_answer(
    surface: Surface, payer: User
) -> None:
    """A deposit claims no key before it runs (its answer is written with its Transaction): a repeat
    sent while the first is still inside the API runs too, and the unique key hash lets one of them
    store the Transaction; both answer with that one answer. (The 409 IDEMPOTENCY_KEY_IN_FLIGHT is
    for the money calls that still claim first: tests/api/test_idempotency.py.)"""
    # Hold the first request inside the API: Deriv answers its KYC refresh (get_settings) late.
    held = surface.gateway.simulator.faults.add(
        {"kind": "delay", "call": "get_settings", "delay": 1.5, "times": 1}
    )
    same = key()
    first = asyncio.create_task(payer.browser.post("/v1/deposits", DEPOSIT, headers=same))

    async def inside() -> None:
        while not held.fired:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(inside(), 10)
    assert not first.done()
    repeat = await payer.browser.post("/v1/deposits", DEPOSIT, headers=same)
    assert repeat.status == 200, repeat.json
    answered = await first
    assert answered.status == 200, answered.json
    assert answered.raw == repeat.raw
    assert await surface.count(transactions) == 1


async def test_the_same_key_with_another_body_gets_422(surface: Surface, payer: User) -> None:
    same = key()
    assert (await payer.browser.post("/v1/deposits", DEPOSIT, headers=same)).status == 200
    other = await payer.browser.post("/v1/deposits", {**DEPOSIT, "amount_cents": "200000"}, headers=same)
    error_shape(other, 422, 9)  # FAILED_PRECONDITION, with the x-http-code the API sets
    assert other.json["title"] == "Unprocessable Content" or other.json["title"] == "Unprocessable Entity"
    assert other.reason == "IDEMPOTENCY_KEY_REUSED" and other.violated_fields == ["idempotency_key"]
    assert await surface.count(transactions) == 1


async def test_after_24_hours_the_key_no_longer_binds_the_request(surface: Surface, payer: User) -> None:
    same = key()
    first = await payer.browser.post("/v1/deposits", DEPOSIT, headers=same)
    assert first.status == 200
    changed = {**DEPOSIT, "amount_cents": "200000"}

    surface.clock.advance(DAY - timedelta(seconds=1))
    await relogin(surface, payer)
    still = await payer.browser.post("/v1/deposits", changed, headers=same)
    assert still.status == 422 and still.reason == "IDEMPOTENCY_KEY_REUSED"

    surface.clock.advance(timedelta(seconds=2))
    await relogin(surface, payer)
    later = await payer.browser.post("/v1/deposits", changed, headers=same)
    assert later.status == 200, later.json  # no longer a mismatch ...
    # ... and the transaction table's unique key hash still gives the first transaction.
    assert later.json["transaction"]["transaction_id"] == first.json["transaction"]["transaction_id"]
    assert await surface.count(transactions) == 1

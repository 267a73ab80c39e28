"""Four-eyes through the HTTP bridge, as the ops console and an operator's script reach it: a person
holding both roles cannot approve their own money-moving proposal; a second person can, once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from penpay_api.http import build_app, discover_services
from penpay_api.http import start_server as start_bridge
from penpay_api.http.discovery import DEFAULT_PACKAGES
from persistence.tables import audit_logs, c2b_payments
from tests.ops.conftest import NOW, Review
from tests.ops.test_paybill_suspense import _suspense_payment

pytestmark = pytest.mark.integration


@pytest.fixture
async def bridge(review: Review) -> AsyncIterator[aiohttp.ClientSession]:
    app = build_app(discover_services(DEFAULT_PACKAGES), review.api.server.address)
    runner, port = await start_bridge(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield http
    finally:
        await runner.cleanup()


async def _post(
    http: aiohttp.ClientSession, review: Review, who: tuple[str, ...], path: str, body: dict[str, Any]
) -> tuple[int, Any]:
    token, _ = review.tokens.issue_operator_token(operator=who[0], now=NOW, roles=who[1:])
    async with http.post(path, json=body, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json(content_type=None)


async def test_a_money_moving_approval_over_the_bridge_takes_a_second_person(
    review: Review, bridge: aiohttp.ClientSession
) -> None:
    user = await review.stack.user()
    reference = await review.stack.paybill.reference_for(user)
    trans_id = await _suspense_payment(review, "my account", 2_600)
    base = f"/v1/ops/paybill_suspense/{trans_id}"
    alice = ("alice", "operator", "approver")

    status, proposed = await _post(
        bridge, review, alice, f"{base}:propose_assignment", {"reference": reference, "reason": "SMS"}
    )
    assert status == 200 and proposed["user_id"] == str(user), proposed
    status, own = await _post(bridge, review, alice, f"{base}:approve_assignment", {})
    assert status == 403 and "FOUR_EYES_REQUIRED" in json.dumps(own), own
    status, viewer = await _post(bridge, review, ("vic", "viewer"), f"{base}:approve_assignment", {})
    assert status == 403 and "ROLE_REQUIRED" in json.dumps(viewer), viewer

    status, approved = await _post(bridge, review, ("bob", "approver"), f"{base}:approve_assignment", {})
    assert status == 200 and approved["transaction_id"], approved
    status, again = await _post(bridge, review, ("carol", "approver"), f"{base}:approve_assignment", {})
    assert status == 400 and "REVIEW_ACTION_NOT_POSSIBLE" in json.dumps(again), (status, again)

    async with review.stack.engine.connect() as conn:
        row = (await conn.execute(select(c2b_payments).where(c2b_payments.c.trans_id == trans_id))).one()
        audits = [
            (r.action, json.loads(r.details))
            for r in await conn.execute(
                select(audit_logs.c.action, audit_logs.c.details)
                .where(audit_logs.c.subject_id == trans_id)
                .order_by(audit_logs.c.id)
            )
        ]
    assert (row.status, row.resolved_by) == ("DEPOSIT", "operator:bob")
    assert [(a, d["proposed_by"], d["approved_by"]) for a, d in audits] == [
        ("review.paybill.assign_proposed", "operator:alice", None),
        ("review.paybill.four_eyes_refused", "operator:alice", "operator:alice"),
        ("review.paybill.assign_approved", "operator:alice", "operator:bob"),
    ]

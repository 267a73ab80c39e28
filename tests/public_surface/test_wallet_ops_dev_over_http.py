"""WalletService (a user's ledger), OpsService (an operator's bearer token; users refused) and the
dev-only DevService through the HTTP bridge: every RPC succeeding and refused, query parameters
transcoded into the request (paging, RFC 3339 timestamps)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from domain.wallet.money import Currency
from tests.api.ledger import move

from .conftest import Surface, error_shape

pytestmark = pytest.mark.integration

INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED = 3, 5, 7, 16


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_balances(surface: Surface) -> None:
    user = await surface.sign_up()
    empty = await user.browser.get("/v1/wallet/balances")
    assert empty.status == 200  # the wallets opened at registration, at zero
    assert {
        b["balance"]["currency"]: b["balance"].get("amount_cents", "0") for b in empty.json["balances"]
    } == {
        "KES": "0",
        "USD": "0",
    }
    await move(surface, user.user_id, 10_000_00)
    await move(surface, user.user_id, 40_00, currency=Currency.USD)

    reply = await user.browser.get("/v1/wallet/balances")
    assert {b["balance"]["currency"]: b["balance"]["amount_cents"] for b in reply.json["balances"]} == {
        "KES": "1000000",
        "USD": "4000",
    }
    anonymous = await surface.browser().get("/v1/wallet/balances")
    error_shape(anonymous, 401, UNAUTHENTICATED)


async def test_ledger_entries_in_pages(surface: Surface) -> None:
    user = await surface.sign_up()
    start = surface.clock.now()
    for i in range(3):
        await move(
            surface, user.user_id, (i + 1) * 100_00, at=start + timedelta(minutes=i), description=f"p{i}"
        )

    first = await user.browser.get("/v1/wallet/ledger_entries", params={"currency": "KES", "page_size": "2"})
    assert first.status == 200
    assert [e["description"] for e in first.json["ledger_entries"]] == ["p2", "p1"]
    assert first.json["ledger_entries"][0]["side"] == "LEDGER_SIDE_CREDIT"
    rest = await user.browser.get(
        "/v1/wallet/ledger_entries",
        params={"currency": "KES", "page_size": "2", "page_token": first.json["next_page_token"]},
    )
    assert [e["description"] for e in rest.json["ledger_entries"]] == ["p0"]
    assert rest.json["next_page_token"] == ""

    too_big = await user.browser.get("/v1/wallet/ledger_entries", params={"page_size": "500"})
    error_shape(too_big, 400, INVALID_ARGUMENT)
    assert too_big.violated_fields == ["page_size"]


async def test_statement(surface: Surface) -> None:
    user = await surface.sign_up()
    day = surface.clock.now()
    await move(surface, user.user_id, 1_000_00, at=day - timedelta(days=2))
    await move(surface, user.user_id, 500_00, at=day - timedelta(hours=12), description="in 1")
    await move(surface, user.user_id, 200_00, out=True, at=day - timedelta(hours=6), description="out 1")

    period = {"currency": "KES", "start_time": rfc3339(day - timedelta(days=1)), "end_time": rfc3339(day)}
    statement = await user.browser.get("/v1/wallet/statement", params=period)
    assert statement.status == 200, statement.json
    body = statement.json
    assert body["opening_balance"]["amount_cents"] == "100000"
    assert (body["total_credits"]["amount_cents"], body["total_debits"]["amount_cents"]) == ("50000", "20000")
    assert body["closing_balance"]["amount_cents"] == "130000"
    assert [e["description"] for e in body["ledger_entries"]] == ["in 1", "out 1"]
    assert body["start_time"] == period["start_time"] and body["truncated"] is False

    no_start = await user.browser.get(
        "/v1/wallet/statement", params={"currency": "KES", "end_time": rfc3339(day)}
    )
    error_shape(no_start, 400, INVALID_ARGUMENT)
    assert no_start.violated_fields == ["start_time"]
    bad_time = await user.browser.get("/v1/wallet/statement", params={**period, "start_time": "yesterday"})
    assert bad_time.status == 400 and bad_time.json["code"] == INVALID_ARGUMENT  # refused by the bridge


async def test_ops_reports_for_operators_only(surface: Surface) -> None:
    user = await surface.sign_up()
    await move(surface, user.user_id, 1_000_00)
    operator = surface.operator()

    report = await operator.get("/v1/ops/reconciliation_report")
    assert report.status == 200, report.json
    totals = {
        (t["kind"], t["balance"]["currency"]): t["balance"]["amount_cents"]
        for t in report.json["account_totals"]
    }
    assert totals[("USER_WALLET", "KES")] == "100000"
    assert all(c["balanced"] for c in report.json["currency_totals"])
    refused = await user.browser.get("/v1/ops/reconciliation_report")
    error_shape(refused, 403, PERMISSION_DENIED)
    assert refused.reason == "OPERATOR_ROLE_REQUIRED"

    outbox = await operator.get("/v1/ops/outbox_stats")
    assert outbox.status == 200 and int(outbox.json["pending"]) >= 1  # UserRegistered and friends
    assert sum(int(v) for v in outbox.json["pending_by_stream"].values()) == int(outbox.json["pending"])
    anonymous = await surface.browser().get("/v1/ops/outbox_stats")
    error_shape(anonymous, 401, UNAUTHENTICATED)

    check = await operator.post("/v1/ops/consistency_checks", {"stale_after_seconds": "3600"})
    assert check.status == 200 and check.json["consistent"] is True and check.json["problems"] == []
    negative = await operator.post("/v1/ops/consistency_checks", {"stale_after_seconds": "-1"})
    error_shape(negative, 400, INVALID_ARGUMENT)
    assert negative.violated_fields == ["stale_after_seconds"]
    huge = await operator.post("/v1/ops/consistency_checks", {"stale_after_seconds": str(2**63 - 1)})
    error_shape(huge, 400, INVALID_ARGUMENT)  # found by schemathesis: was a 500 (timedelta overflow)
    assert huge.violated_fields == ["stale_after_seconds"]


async def test_the_review_queue_over_the_bridge(surface: Surface) -> None:
    user = await surface.sign_up()
    viewer = surface.operator("vera", ("viewer",))
    empty = await viewer.get("/v1/ops/review_queue", params={"statuses": "NEEDS_REVIEW", "type": "DEPOSIT"})
    assert empty.status == 200 and empty.json.get("items", []) == [], empty.json
    refused = await user.browser.get("/v1/ops/review_queue")
    error_shape(refused, 403, PERMISSION_DENIED)
    bad = await viewer.get("/v1/ops/review_queue", params={"statuses": "COMPLETED"})
    error_shape(bad, 400, INVALID_ARGUMENT)
    assert bad.violated_fields == ["statuses"]

    body = {"transaction_id": str(uuid.uuid4()), "kind": "REVIEW_ACTION_KIND_REFUND", "reason": "why"}
    by_viewer = await viewer.post("/v1/ops/review_actions", body)
    error_shape(by_viewer, 403, PERMISSION_DENIED)
    assert by_viewer.reason == "ROLE_REQUIRED"
    unknown = await surface.operator("olga").post("/v1/ops/review_actions", body)
    error_shape(unknown, 404, NOT_FOUND)
    approve = await surface.operator("olga").post(f"/v1/ops/review_actions/{uuid.uuid4()}:approve", {})
    error_shape(approve, 403, PERMISSION_DENIED)
    missing = await surface.operator("amos", ("approver",)).post(
        f"/v1/ops/review_actions/{uuid.uuid4()}:approve", {}
    )
    error_shape(missing, 404, NOT_FOUND)
    assert missing.reason == "REVIEW_ACTION_NOT_FOUND"


async def test_dead_letters_counted_and_replayed(surface: Surface) -> None:
    bus = surface.bus
    await bus.ensure_group("penpay.payments", "sagas")
    await bus.publish(
        [
            ("penpay.payments", {"event_type": "DepositInitiated", "event_id": f"e{i}", "payload": "{}"})
            for i in range(2)
        ]
    )
    for delivery in await bus.read(["penpay.payments"], "sagas", "c1", count=2, block_ms=0):
        await bus.dead_letter(delivery, group="sagas", consumer="c1", error="boom")
    operator = surface.operator()

    stats = await operator.get("/v1/ops/dead_letter_stats")
    assert stats.status == 200 and stats.json["total"] == "2"
    (stream,) = stats.json["streams"]
    assert stream["stream"] == "penpay.payments" and stream["by_event_type"] == {"DepositInitiated": "2"}
    user = await surface.sign_up()
    refused = await user.browser.get("/v1/ops/dead_letter_stats")
    error_shape(refused, 403, PERMISSION_DENIED)

    unknown = await operator.post(
        "/v1/ops/dead_letters:replay", {"stream": "penpay.payments", "dead_letter_id": "1-1"}
    )
    error_shape(unknown, 400, INVALID_ARGUMENT)
    assert unknown.violated_fields == ["dead_letter_id"]
    replayed = await operator.post("/v1/ops/dead_letters:replay", {"stream": "penpay.payments"})
    assert replayed.status == 200 and len(replayed.json["replayed"]) == 2
    assert (await operator.get("/v1/ops/dead_letter_stats")).json["total"] == "0"


async def test_dev_messages_are_the_callers_own(surface: Surface) -> None:
    alice, bob = await surface.sign_up(), await surface.sign_up()
    for user in (alice, bob):
        assert (await user.browser.post("/v1/users/me/phone:requestVerification")).status == 200
    mine = await alice.browser.get("/v1/dev/sent_messages")
    assert mine.status == 200 and [m["to"] for m in mine.json["messages"]] == [alice.phone]
    bad = await alice.browser.get("/v1/dev/sent_messages", params={"channel": "fax"})
    error_shape(bad, 400, INVALID_ARGUMENT)
    assert bad.violated_fields == ["channel"]

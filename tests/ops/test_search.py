"""Finding a transaction the way an operator is asked about it (OpsService.SearchTransactions over
real sockets), and its ledger lines in the review item."""

from __future__ import annotations

import grpc
import pytest

from domain.payments.status import TransactionStatus as S
from penpay.ops.v1 import ops_pb2 as pb
from persistence.transaction_search import phone_pattern
from tests.ops.conftest import Review, bearer
from tests.ops.test_review_queue import refused_deposit, user_token

pytestmark = pytest.mark.integration


def test_phone_patterns_compare_only_the_visible_digits() -> None:
    assert phone_pattern("0712***678") == "254712___678"
    assert phone_pattern("2547*****678") == "2547_____678"
    assert phone_pattern("+254 712 345 678") == "254712345678"
    assert phone_pattern("0712345678") == "254712345678"
    for not_a_phone in ("0812***678", "07123", "CR90000001", "12345", "0712****678"):
        assert phone_pattern(not_a_phone) is None, not_a_phone


async def test_a_transaction_is_found_by_id_receipt_deriv_id_and_masked_phone(review: Review) -> None:
    stack = review.stack
    user = await stack.user(phone="254712345670")
    done = await stack.settle((await stack.deposit(user, 2_600)).id)
    assert done.status is S.COMPLETED
    assert done.mpesa_request is not None and done.deriv_transfer is not None
    receipt = done.mpesa_request.mpesa_receipt_number
    deriv_id = done.deriv_transfer.deriv_transaction_id
    assert receipt and deriv_id
    other = await refused_deposit(review)  # phone 254712345678: same visible head, other tail
    vera = review.staff("vera", "viewer")

    async def search(query: str) -> list[tuple[str, str]]:
        answer = await review.ops.SearchTransactions(pb.SearchTransactionsRequest(query=query), metadata=vera)
        return [(m.transaction_id, m.matched_on) for m in answer.matches]

    tx = str(done.id)
    assert await search(tx) == [(tx, "TRANSACTION_ID")]
    assert await search(receipt) == [(tx, "MPESA_RECEIPT")]
    assert await search(receipt.lower()) == [(tx, "MPESA_RECEIPT")]
    assert await search(str(deriv_id)) == [(tx, "DERIV_TRANSACTION_ID")]
    assert await search("0712***670") == [(tx, "PHONE")]
    assert await search("0712***678") == [(str(other), "PHONE")]
    assert {t for t, _ in await search("0712******")} == set()  # nothing visible at the end: no match
    assert await search("0799***670") == []
    answer = await review.ops.SearchTransactions(pb.SearchTransactionsRequest(query=tx), metadata=vera)
    assert answer.matches[0].phone == "2547*****670"  # never the whole number

    for bad in ("", "x" * 65, "a\x00b"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await review.ops.SearchTransactions(pb.SearchTransactionsRequest(query=bad), metadata=vera)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await review.ops.SearchTransactions(
            pb.SearchTransactionsRequest(query=tx), metadata=bearer(await user_token(review))
        )
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_a_review_item_carries_its_ledger_lines(review: Review) -> None:
    tx_id = await refused_deposit(review)
    answer = await review.ops.ListReviewQueue(
        pb.ListReviewQueueRequest(transaction_id=str(tx_id)), metadata=review.staff("vera", "viewer")
    )
    lines = answer.items[0].ledger_lines
    assert lines, "the confirmed M-Pesa payment was booked"
    by_posting: dict[str, dict[str, int]] = {}
    for line in lines:
        sign = 1 if line.side == "DEBIT" else -1
        totals = by_posting.setdefault(line.posting_id, {})
        totals[line.amount.currency] = totals.get(line.amount.currency, 0) + sign * line.amount.amount_cents
    assert all(total == 0 for totals in by_posting.values() for total in totals.values())
    assert {line.account_kind for line in lines} >= {"MPESA_FLOAT", "USER_WALLET"}


async def test_revealing_a_phone_number_is_audited_and_for_operators_only(review: Review) -> None:
    import json

    from sqlalchemy import select

    from persistence.tables import audit_logs

    tx_id = await refused_deposit(review)  # phone 254712345678

    async def reveals() -> list[tuple[str, dict[str, object]]]:
        async with review.stack.engine.connect() as connection:
            rows = await connection.execute(
                select(audit_logs.c.actor, audit_logs.c.details).where(
                    audit_logs.c.subject_id == str(tx_id), audit_logs.c.action == "ops.pii_revealed"
                )
            )
            return [(r.actor, json.loads(r.details)) for r in rows]

    refusals = [
        (review.staff("vera", "viewer"), "customer called", grpc.StatusCode.PERMISSION_DENIED),
        (review.staff("olga", "operator"), "  ", grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for staff, reason, code in refusals:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await review.ops.RevealCustomerPhone(
                pb.RevealCustomerPhoneRequest(transaction_id=str(tx_id), reason=reason), metadata=staff
            )
        assert refused.value.code() is code
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await review.ops.RevealCustomerPhone(
            pb.RevealCustomerPhoneRequest(transaction_id="01890a5d-ac96-774b-bcce-b302099a8057", reason="x"),
            metadata=review.staff("olga", "operator"),
        )
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    assert await reveals() == []  # nothing revealed, nothing recorded

    answer = await review.ops.RevealCustomerPhone(
        pb.RevealCustomerPhoneRequest(transaction_id=str(tx_id), reason="customer asked for a call back"),
        metadata=review.staff("olga", "operator"),
    )
    assert answer.phone == "254712345678"
    assert await reveals() == [
        (
            "operator:olga",
            {"field": "phone", "revealed_to": "operator:olga", "reason": "customer asked for a call back"},
        )
    ]


def test_hourly_counts_put_each_moment_in_its_hour() -> None:
    from datetime import UTC, datetime, timedelta

    from persistence.ops_queries import hourly

    now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    moments = [
        now,
        now - timedelta(minutes=59),
        now - timedelta(minutes=61),
        now - timedelta(hours=3, minutes=1),
    ]
    moments += [now - timedelta(hours=24), now + timedelta(seconds=1)]  # outside the window
    hours = hourly(moments, now, 24)
    assert len(hours) == 24 and hours[0][0] == now - timedelta(hours=24)
    assert [c for _, c in hours][-4:] == [1, 0, 1, 2]
    assert sum(c for _, c in hours) == 4


async def test_the_report_counts_completions_in_the_last_24_hours(review: Review) -> None:
    from datetime import timedelta

    from persistence.ops_queries import reconciliation_report

    stack = review.stack
    user = await stack.user(phone="254712345670")
    done = await stack.settle((await stack.deposit(user, 2_600)).id)
    assert done.status is S.COMPLETED and done.updated_at is not None
    report = await reconciliation_report(stack.engine, now=done.updated_at + timedelta(minutes=5))
    assert [c for _, c in report.completed_by_hour][-1] == 1
    assert sum(c for _, c in report.completed_by_hour) == 1
    # In flight, from its timestamps: in the hour it ran, in no other.
    assert [c for _, c in report.in_flight_by_hour] == [0] * 23 + [1]
    later = await reconciliation_report(stack.engine, now=done.updated_at + timedelta(hours=25))
    assert sum(c for _, c in later.completed_by_hour) == 0
    assert sum(c for _, c in later.in_flight_by_hour) == 0
    # Over the API: 24 hours ending at the answer's own time.
    answer = await review.ops.GetReconciliationReport(
        pb.GetReconciliationReportRequest(), metadata=review.staff("vera", "viewer")
    )
    assert len(answer.completed_by_hour) == 24
    assert [h.start for h in answer.in_flight_by_hour] == [h.start for h in answer.completed_by_hour]
    assert answer.completed_by_hour[-1].start.ToDatetime() == (
        answer.generated_at.ToDatetime() - timedelta(hours=1)
    )

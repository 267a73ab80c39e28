"""Answers about another request than ours, per Daraja API, from the simulator's `foreign_answer` and
`foreign_result` faults over real sockets: nothing changes, the answer is kept for review, an alert is
raised. A later correct answer still settles the payment."""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from application.payments.errors import CallOutcomeUnknown
from domain.wallet.money import Currency, Money
from mpesa_adapter.alerting import FOREIGN_ANSWER_ALERT
from mpesa_adapter.balance_queries import ask_account_balance
from mpesa_adapter.callback_store import (
    BALANCE_QUERY_SUBJECT,
    CONFIRMED,
    SENT,
    SUCCEEDED,
)
from mpesa_adapter.confirmer import Verdict
from mpesa_adapter.inbox import Outcome
from mpesa_adapter.routes import PATHS, CallbackKind
from mpesa_adapter.saga_port import DarajaMpesaGateway
from persistence.tables import audit_logs
from tests.mpesa_adapter.conftest import Harness, phone
from workers.alert_metrics import count_alerts

pytestmark = pytest.mark.integration


def alert_count() -> float:
    return REGISTRY.get_sample_value("penpay_alerts_total", {"kind": FOREIGN_ANSWER_ALERT}) or 0.0


class Alerts:
    """The foreign-answer alerts raised during a test: the log records and the Prometheus counter."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        count_alerts()
        caplog.set_level(logging.ERROR, logger="penpay.alerts")
        self._caplog = caplog
        self._start = alert_count()

    def records(self) -> list[logging.LogRecord]:
        return [r for r in self._caplog.records if getattr(r, "alert", None) == FOREIGN_ANSWER_ALERT]

    def correlation_ids(self) -> list[object]:
        # set by the alert's `extra=`: not an attribute LogRecord declares
        return [getattr(r, "correlation_id", None) for r in self.records()]

    def counted(self) -> float:
        return alert_count() - self._start


@pytest.fixture
def alerts(caplog: pytest.LogCaptureFixture) -> Alerts:
    return Alerts(caplog)


async def test_stk_query_about_another_checkout_neither_pays_nor_fails_the_deposit(
    h: Harness, alerts: Alerts
) -> None:
    cancelled, paid = phone(), phone()
    for msisdn in (cancelled, paid):
        h.sim.add_fault("drop", api="stk", phone=msisdn)  # no callback: the query alone decides
    h.sim.set_outcome("stk", 1032, phone=cancelled)
    _, cancelled_id = await h.push(cancelled, 40)
    _, paid_id = await h.push(paid, 40)
    await h.drain()

    # "Completed" for another checkout while ours was cancelled; "cancelled" for another while ours paid.
    h.sim.add_fault("foreign_answer", api="stk_query")
    first = await h.confirmer.confirm_stk(cancelled_id)
    h.sim.add_fault("foreign_answer", api="stk_query", params={"result_code": 1032})
    second = await h.confirmer.confirm_stk(paid_id)

    assert (first.verdict, first.newly_confirmed) == (Verdict.PENDING, False)
    assert second.verdict == Verdict.PENDING
    for checkout in (cancelled_id, paid_id):
        row = await h.request_row(checkout)
        assert (row.status, row.result_code) == (SENT, None)
        (kept,) = await h.reviews(checkout)
        assert (kept.kind, kept.reason, kept.status) == ("stk_query", "FOREIGN_ANSWER", "OPEN")
        assert kept.transaction_id == row.transaction_id
        assert b"CheckoutRequestID" in kept.raw_body and checkout.encode() not in kept.raw_body
    assert alerts.correlation_ids() == [cancelled_id, paid_id]
    assert alerts.counted() == 2

    # The next, correct, answers settle both.
    assert (await h.confirmer.confirm_stk(cancelled_id)).verdict == Verdict.FAILED
    assert (await h.confirmer.confirm_stk(paid_id)).verdict == Verdict.CONFIRMED


async def test_b2c_answer_naming_another_originator_conversation_id_is_not_taken(
    h: Harness, alerts: Alerts
) -> None:
    msisdn = phone()
    tx_id = await h.new_transaction(msisdn, 300_00, kind="WITHDRAWAL")
    ocid = f"PENPAY-{tx_id.hex}"
    await h.store_disbursement(tx_id, ocid, msisdn, 300)
    h.sim.add_fault("foreign_answer", api="b2c", phone=msisdn)

    # Through the saga's port: not accepted, not refused (it may have gone): an unknown outcome.
    port = DarajaMpesaGateway(h.client, h.confirmer)
    with pytest.raises(CallOutcomeUnknown) as raised:
        await port.b2c(originator_conversation_id=ocid, phone=msisdn, amount=Money(300_00, Currency.KES))
    assert ocid in raised.value.reason

    row = await h.disbursement_row(ocid)
    assert (row.status, row.conversation_id) == (SENT, None)  # the server's id never became ours
    (kept,) = await h.reviews(ocid)
    assert (kept.kind, kept.reason, kept.transaction_id) == ("b2c", "FOREIGN_ANSWER", tx_id)
    assert alerts.correlation_ids() == [ocid]
    assert alerts.counted() == 1

    # The payout the first call made is settled by its own Result, naming our id.
    await h.drain()
    assert (await h.disbursement_row(ocid)).status == SUCCEEDED
    assert h.sim.books["b2c"]["total_paid"] == 300


async def test_b2c_result_about_another_payout_changes_nothing(h: Harness, alerts: Alerts) -> None:
    msisdn = phone()
    h.sim.add_fault("foreign_result", api="b2c", phone=msisdn)
    tx_id, ocid = await h.payout(msisdn, 250)
    await h.drain()

    (delivered,) = h.callbacks(ocid, "b2c_result_foreign")
    foreign = delivered["body"]["Result"]["OriginatorConversationID"]
    assert h.inbox.of("b2c_result") == [Outcome.UNKNOWN]
    row = await h.disbursement_row(ocid)
    assert (row.status, row.transaction_receipt, row.conversation_id) == (SENT, None, None)
    (kept,) = await h.reviews(foreign)
    assert (kept.kind, kept.reason) == ("b2c_result", "UNKNOWN_ID")
    assert alerts.correlation_ids() == [foreign]
    assert alerts.counted() == 1
    assert await h.events(tx_id) == []

    # Transaction Status, answering about our payout, settles it.
    await h.confirmer.confirm_b2c(ocid)
    await h.drain()
    assert (await h.disbursement_row(ocid)).status == CONFIRMED


async def test_transaction_status_about_another_payout_changes_nothing(h: Harness, alerts: Alerts) -> None:
    msisdn = phone()
    h.sim.add_fault("drop", api="b2c", phone=msisdn)  # no Result: Transaction Status decides
    tx_id, ocid = await h.payout(msisdn, 300)
    await h.drain()
    h.sim.add_fault("foreign_result", api="status")

    assert (await h.confirmer.confirm_b2c(ocid)).verdict == Verdict.PENDING
    await h.drain()

    assert h.inbox.of("status_result") == [Outcome.MISMATCH]
    row = await h.disbursement_row(ocid)
    assert (row.status, row.transaction_receipt) == (SENT, None)
    (kept,) = await h.reviews(ocid)
    assert (kept.kind, kept.reason, kept.transaction_id) == ("status_result", "FOREIGN_ANSWER", tx_id)
    assert alerts.correlation_ids() == [ocid]
    assert alerts.counted() == 1

    await h.confirmer.confirm_b2c(ocid)
    await h.drain()
    assert (await h.disbursement_row(ocid)).status == CONFIRMED


async def test_transaction_status_naming_another_receipt_than_ours_changes_nothing(
    h: Harness, alerts: Alerts
) -> None:
    msisdn = phone()
    tx_id, ocid = await h.payout(msisdn, 120)
    await h.drain()
    assert (await h.disbursement_row(ocid)).status == SUCCEEDED
    h.sim.add_fault("drop", api="status")  # we deliver it ourselves, with another receipt
    await h.confirmer.confirm_b2c(ocid)
    await h.drain()
    (status,) = [c for c in h.sim.callbacks if c["kind"] == "status_result"]
    body: dict[str, Any] = copy.deepcopy(status["body"])
    for item in body["Result"]["ResultParameters"]["ResultParameter"]:
        if item["Key"] == "ReceiptNo":
            item["Value"] = "UKZ0OTHER1"

    assert (await h.post_raw(PATHS[CallbackKind.STATUS_RESULT], body))[0] == 200

    assert h.inbox.of("status_result") == [Outcome.MISMATCH]
    assert (await h.disbursement_row(ocid)).status == SUCCEEDED  # not REVIEW, not CONFIRMED
    (kept,) = await h.reviews(ocid)
    assert (kept.reason, kept.transaction_id) == ("FOREIGN_ANSWER", tx_id)
    assert alerts.counted() == 1


async def test_transaction_status_naming_its_payout_only_in_the_occasion_settles_it(
    h: Harness, alerts: Alerts
) -> None:
    """No OriginatorConversationID parameter: the echoed Occasion names the payout, and the receipt
    the answer carries is the payout's (not a second subject to compare with the Occasion)."""
    msisdn = phone()
    h.sim.add_fault("drop", api="b2c", phone=msisdn)  # no Result: Transaction Status decides
    tx_id, ocid = await h.payout(msisdn, 300)
    await h.drain()
    h.sim.add_fault("drop", api="status")  # we deliver it ourselves, without the parameter
    assert (await h.confirmer.confirm_b2c(ocid)).verdict == Verdict.PENDING
    await h.drain()
    (status,) = [c for c in h.sim.callbacks if c["kind"] == "status_result"]
    body: dict[str, Any] = copy.deepcopy(status["body"])
    result = body["Result"]
    assert result["ReferenceData"]["ReferenceItem"] == {"Key": "Occasion", "Value": ocid}
    params = result["ResultParameters"]["ResultParameter"]
    receipt = next(item["Value"] for item in params if item["Key"] == "ReceiptNo")
    result["ResultParameters"]["ResultParameter"] = [
        item for item in params if item["Key"] != "OriginatorConversationID"
    ]

    assert (await h.post_raw(PATHS[CallbackKind.STATUS_RESULT], body))[0] == 200

    assert h.inbox.of("status_result") == [Outcome.CONFIRMED]
    row = await h.disbursement_row(ocid)
    assert (row.status, row.transaction_receipt) == (CONFIRMED, receipt)
    assert await h.reviews(ocid) == []
    assert alerts.counted() == 0
    assert "MpesaDisbursementCompleted" in [e.event_type for e in await h.events(tx_id)]


async def test_account_balance_result_is_taken_only_when_it_answers_a_query_of_ours(
    h: Harness, alerts: Alerts
) -> None:
    asked_at = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    ours = await ask_account_balance(h.client, h.store, now=asked_at)
    await h.drain()
    h.sim.add_fault("foreign_result", api="balance")
    other = await ask_account_balance(h.client, h.store, now=asked_at)
    await h.drain()

    assert h.inbox.of("balance_result") == [Outcome.STATUS_RECORDED, Outcome.UNKNOWN]
    (delivered,) = [
        c
        for c in h.sim.callbacks
        if c["kind"] == "balance_result" and c["ref"] == other.originator_conversation_id
    ]
    foreign = delivered["body"]["Result"]["ConversationID"]
    assert foreign != other.conversation_id
    (kept,) = await h.reviews(foreign)
    assert (kept.kind, kept.reason) == ("balance_result", "UNKNOWN_ID")
    assert await h.reviews(ours.conversation_id) == []
    assert alerts.correlation_ids() == [foreign]
    assert alerts.counted() == 1
    async with h.engine.connect() as conn:
        audited = (
            await conn.execute(
                select(audit_logs.c.action, audit_logs.c.subject_id).where(
                    audit_logs.c.subject_type == BALANCE_QUERY_SUBJECT
                )
            )
        ).all()
    # Both queries are on record; only ours was answered.
    assert sorted(map(tuple, audited)) == sorted(
        [
            ("mpesa.balance_query.sent", ours.conversation_id),
            ("mpesa.balance_query.sent", other.conversation_id),
            ("mpesa.balance_query.answered", ours.conversation_id),
        ]
    )


async def test_b2c_result_naming_another_receipt_than_the_one_we_hold_changes_nothing(
    h: Harness, alerts: Alerts
) -> None:
    msisdn = phone()
    _, ocid = await h.payout(msisdn, 140)
    await h.drain()
    held = await h.disbursement_row(ocid)
    assert held.status == SUCCEEDED
    (result,) = h.callbacks(ocid, "b2c_result")
    body: dict[str, Any] = copy.deepcopy(result["body"])
    for item in body["Result"]["ResultParameters"]["ResultParameter"]:
        if item["Key"] == "TransactionReceipt":
            item["Value"] = "UKZ0OTHER2"

    assert (await h.post_raw(PATHS[CallbackKind.B2C_RESULT], body))[0] == 200

    assert h.inbox.of("b2c_result") == [Outcome.SUCCESS_RECORDED, Outcome.CONFLICT]
    row = await h.disbursement_row(ocid)
    assert (row.status, row.transaction_receipt) == (SUCCEEDED, held.transaction_receipt)
    (kept,) = await h.reviews(ocid)
    assert (kept.reason, kept.transaction_id) == ("CONFLICTING_RESULT", held.transaction_id)
    assert alerts.correlation_ids() == [ocid]
    assert alerts.counted() == 1

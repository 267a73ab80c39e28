"""The dashboard's figures: transactions in flight per hour from their timestamps, and each float
beside the provider's balance from the auditor's verdict. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from penpay.common.v1 import money_pb2
from penpay.ops.v1 import ops_pb2 as pb
from penpay_api.console import views
from persistence.ops_queries import in_flight_hourly

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
H = timedelta(hours=1)


def test_a_transaction_is_in_flight_in_every_hour_it_overlaps() -> None:
    spans: list[tuple[datetime, datetime | None]] = [
        (NOW - 3 * H - timedelta(minutes=10), NOW - 2 * H + timedelta(minutes=5)),  # three hours
        (NOW - timedelta(minutes=20), None),  # still in flight: the last hour only
        (NOW - 30 * H, None),  # created before the window, still in flight: every hour
        (NOW - 30 * H, NOW - 25 * H),  # final before the window began: no hour
        (NOW - 2 * H + timedelta(minutes=1), NOW - 2 * H + timedelta(minutes=2)),  # within one hour
        (NOW - 5 * H, NOW - 4 * H),  # final exactly when an hour begins: not in that hour
    ]
    hours = in_flight_hourly(spans, NOW, 24)
    assert len(hours) == 24 and hours[0][0] == NOW - 24 * H and hours[-1][0] == NOW - H
    counts = [c for _, c in hours]
    assert counts[-6:] == [1, 2, 2, 2, 3, 2]
    assert counts[:18] == [1] * 18


def test_no_transactions_no_hour_in_flight() -> None:
    assert [c for _, c in in_flight_hourly([], NOW, 3)] == [0, 0, 0]


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _report() -> pb.GetReconciliationReportResponse:
    return pb.GetReconciliationReportResponse(
        generated_at=_stamp(NOW),
        account_totals=[
            pb.AccountKindTotal(
                kind="DERIV_AGENT_FLOAT", balance=money_pb2.Money(amount_cents=1_000_000, currency="USD")
            ),
            pb.AccountKindTotal(
                kind="MPESA_FLOAT", balance=money_pb2.Money(amount_cents=50_000_000, currency="KES")
            ),
        ],
        in_flight_by_hour=[
            pb.HourlyCount(start=_stamp(NOW - 2 * H), count=3),
            pb.HourlyCount(start=_stamp(NOW - H), count=1),
        ],
    )


def _dashboard(*verdicts: pb.AuditorVerdict) -> views.Dashboard:
    thresholds = {"MPESA_FLOAT": ("KES", 5_000_000), "DERIV_AGENT_FLOAT": ("USD", 100_000)}
    return views.dashboard(
        _report(),
        pb.GetOutboxStatsResponse(),
        pb.GetDeadLetterStatsResponse(),
        thresholds,
        pb.GetAuditorVerdictsResponse(verdicts=list(verdicts)),
    )


def test_each_float_shows_the_providers_balance_the_auditor_saw_and_the_difference() -> None:
    deriv = pb.AuditorVerdict(
        check="float_deriv",
        status="FAIL",
        summary="Deriv agent float: ...",
        details_json=json.dumps(
            {
                "currency": "USD",
                "ledger_cents": 1_000_000,
                "provider_cents": 980_000,
                "difference_cents": 20_000,
            }
        ),
        checked_at=_stamp(NOW - timedelta(minutes=3)),
    )
    mpesa = pb.AuditorVerdict(
        check="float_mpesa",
        status="OK",
        details_json=json.dumps(
            {
                "answered_at": (NOW - timedelta(minutes=7)).isoformat(),
                "ledger_cents": 50_000_000,
                "provider_cents": 50_000_050,
                "difference_cents": -50,
            }
        ),
        checked_at=_stamp(NOW - timedelta(minutes=3)),
    )
    floats = {f.kind: f for f in _dashboard(deriv, mpesa).floats}
    d = floats["DERIV_AGENT_FLOAT"].provider
    assert d is not None and d.failed
    assert (d.balance, d.difference) == ("USD 9,800.00", "USD 200.00")
    assert d.seen_at == datetime(2026, 3, 2, 9, 27)  # the run: it asked the gateway then
    m = floats["MPESA_FLOAT"].provider
    assert m is not None and not m.failed
    # No currency in older verdicts' details: the float's own.
    assert (m.balance, m.difference) == ("KES 500,000.50", "KES -0.50")
    assert m.seen_at == datetime(2026, 3, 2, 9, 23)  # Daraja's answer, not the run


def test_a_float_the_auditor_skipped_or_never_saw_has_no_provider_figure() -> None:
    skipped = pb.AuditorVerdict(
        check="float_mpesa", status="SKIPPED", summary="no M-Pesa Account Balance result recorded yet"
    )
    floats = {f.kind: f for f in _dashboard(skipped).floats}
    assert floats["DERIV_AGENT_FLOAT"].provider is None
    m = floats["MPESA_FLOAT"].provider
    assert m is not None and m.balance == "" and m.summary.startswith("no M-Pesa")


def test_the_in_flight_chart_has_a_column_per_hour() -> None:
    chart = _dashboard().in_flight_hours_chart
    assert [c.value for c in chart.columns] == [3, 1] and chart.peak == 3
    assert chart.columns[0].label == "2026-03-02 07:30 UTC: 3"

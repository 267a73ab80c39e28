"""The console's CSV rows and report views: amounts in minor units, phone numbers masked, text a
spreadsheet would run kept as text; verdicts grouped by auditor run. Pure."""

from __future__ import annotations

import csv
import io

import pytest

from application.reconciliation.export import CSV_COLUMNS
from penpay.common.v1 import money_pb2
from penpay.ops.v1 import ops_pb2 as pb
from penpay_api.console import views

pytestmark = pytest.mark.unit


def test_a_csv_row_masks_phone_numbers_and_disarms_formulas() -> None:
    item = pb.ReconciliationItem(
        item_key='=HYPERLINK("http://x")',
        source="mpesa_c2b",
        item_class="UNKNOWN_AT_PENPAY",
        provider_ref="UAB1CD2EF3",
        provider_amount=money_pb2.Money(amount_cents=-50_000, currency="KES"),
        detail="paid by 254712345678 with no reference; @SUM(A1)",
    )
    row = views.csv_row(item)
    assert len(row) == len(CSV_COLUMNS)
    by_name = dict(zip(CSV_COLUMNS, row, strict=True))
    assert by_name["item_key"].startswith("'=")
    assert (by_name["provider_amount_cents"], by_name["provider_amount_currency"]) == ("-50000", "KES")
    assert (by_name["penpay_amount_cents"], by_name["penpay_amount_currency"]) == ("", "")
    assert by_name["occurred_at"] == ""
    assert "254712345678" not in by_name["detail"] and "2547*****678" in by_name["detail"]
    # A whole file reads back as it was written.
    buffer = io.StringIO()
    csv.writer(buffer).writerows([list(CSV_COLUMNS), row])
    assert list(csv.reader(io.StringIO(buffer.getvalue())))[1] == row


def test_verdicts_are_grouped_by_run_and_a_run_with_a_fail_is_failing() -> None:
    answer = pb.GetAuditorVerdictsResponse(
        verdicts=[
            pb.AuditorVerdict(run_id="b", check="ledger_sums", status="FAIL", summary="USD 5"),
            pb.AuditorVerdict(run_id="b", check="audit_chain", status="OK", summary="intact"),
            pb.AuditorVerdict(run_id="a", check="ledger_sums", status="OK", summary="zero"),
        ],
        failing=True,
    )
    runs = views.audit_runs(answer)
    assert [r["run_id"] for r in runs] == ["b", "a"]
    assert [v["check"] for v in runs[0]["verdicts"]] == ["audit_chain", "ledger_sums"]
    assert (runs[0]["failing"], runs[1]["failing"]) == (True, False)


def test_a_suspense_item_shows_what_the_customer_typed_masked() -> None:
    shown = views.suspense_item(pb.PaybillSuspenseItem(trans_id="UAB1CD2EF3", bill_ref="0712345678"))
    assert shown["bill_ref"] == "0712***678"


def test_an_item_is_flagged_for_a_person_as_the_reconciliation_rules_say() -> None:
    assert views.recon_item(pb.ReconciliationItem(item_class="MATCHED"))["explained"] is True
    assert views.recon_item(pb.ReconciliationItem(item_class="AWAITING_PROVIDER"))["explained"] is True
    assert views.recon_item(pb.ReconciliationItem(item_class="AMOUNT_MISMATCH"))["explained"] is False
    assert views.recon_item(pb.ReconciliationItem(item_class="NO_SUCH_CLASS"))["explained"] is False

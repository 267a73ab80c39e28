"""Deriv's v3 statement and REST wallet are one book: merged by transaction id, each kept once; a
disagreement between the two views is carried, never dropped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from application.reconciliation.ports import ProviderRecord
from application.reconciliation.rules import Amount
from deriv_gateway.statement_client import merge

pytestmark = pytest.mark.unit

AT = datetime(2026, 3, 1, tzinfo=UTC)


def record(
    ref: str, cents: int, *, credit: bool = False, hint: str | None = None, status: str = "complete"
) -> ProviderRecord:
    return ProviderRecord(ref, Amount(cents, "USD"), credit, AT, "", transaction_hint=hint, status=status)


def test_one_transaction_seen_through_both_transports_is_kept_once() -> None:
    v3 = [record("1", 20_00, hint="a"), record("2", 10_00, credit=True)]
    wallet = [
        record("2", 10_00, credit=True, hint="b", status="reverted"),
        record("3", 5_00),
        record("1", 20_00),
    ]
    merged = {r.ref: r for r in merge(v3, wallet)}
    assert sorted(merged) == ["1", "2", "3"] and len(merge(v3, wallet)) == 3
    assert merged["1"].transaction_hint == "a" and not merged["1"].conflict
    assert merged["2"].transaction_hint == "b" and merged["2"].status == "reverted"


def test_a_disagreement_between_the_views_is_carried() -> None:
    [only] = merge([record("1", 20_00)], [record("1", 25_00)])
    assert only.amount == Amount(20_00, "USD") and "2500 USD out" in only.conflict

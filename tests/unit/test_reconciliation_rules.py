"""The reconciliation table: every class from the situation that makes it, and what it asks for."""

from __future__ import annotations

import pytest

from application.reconciliation.rules import (
    CLASSES,
    Amount,
    Comparison,
    ItemClass,
    classify,
    classify_float,
    held_in_suspense,
)
from application.reconciliation.service import transaction_hint

pytestmark = pytest.mark.unit

KES = Amount(2_600_00, "KES")


@pytest.mark.parametrize(
    ("comparison", "expected"),
    [
        (Comparison(provider=KES, evidence=KES, ledger=KES), ItemClass.MATCHED),
        (Comparison(provider=KES, evidence=KES, ledger=KES, party_agrees=False), ItemClass.PARTY_MISMATCH),
        (
            Comparison(provider=KES, evidence=KES, ledger=None, party_agrees=False),
            ItemClass.AMOUNT_MISMATCH,  # the amount decides first
        ),
        (
            Comparison(provider=KES, evidence=KES, ledger=KES, in_suspense=True, party_agrees=False),
            ItemClass.PARTY_MISMATCH,
        ),
        (Comparison(provider=KES, evidence=None, ledger=None), ItemClass.UNKNOWN_AT_PENPAY),
        (Comparison(provider=None, evidence=KES, ledger=KES), ItemClass.MISSING_AT_PROVIDER),
        (Comparison(provider=None, evidence=KES, ledger=None, awaiting=True), ItemClass.AWAITING_PROVIDER),
        (
            Comparison(provider=None, evidence=KES, ledger=None, awaiting=True, overdue=True),
            ItemClass.MISSING_AT_PROVIDER,
        ),
        (Comparison(provider=KES, evidence=Amount(2_601_00, "KES"), ledger=KES), ItemClass.AMOUNT_MISMATCH),
        (Comparison(provider=KES, evidence=Amount(2_600_00, "USD"), ledger=KES), ItemClass.AMOUNT_MISMATCH),
        (Comparison(provider=KES, evidence=KES, ledger=None), ItemClass.AMOUNT_MISMATCH),
        (
            Comparison(provider=KES, evidence=KES, ledger=KES, provider_copies=2),
            ItemClass.DUPLICATE_AT_PROVIDER,
        ),
        # a paybill payment PenPay put in suspense itself: explained by its suspense, at its amount
        (Comparison(provider=KES, evidence=KES, ledger=KES, in_suspense=True), ItemClass.HELD_IN_SUSPENSE),
        (
            Comparison(provider=KES, evidence=Amount(1_00, "KES"), ledger=None, in_suspense=True),
            ItemClass.AMOUNT_MISMATCH,
        ),
    ],
)
def test_classify(comparison: Comparison, expected: ItemClass) -> None:
    assert classify(comparison) is expected


def test_floats_and_what_each_class_asks() -> None:
    assert classify_float(KES, KES) is ItemClass.MATCHED
    assert classify_float(KES, Amount(0, "KES")) is ItemClass.FLOAT_MISMATCH
    assert set(CLASSES) == set(ItemClass)
    assert [c for c, rule in CLASSES.items() if rule.suspense] == [ItemClass.UNKNOWN_AT_PENPAY]
    assert {c for c, rule in CLASSES.items() if rule.explained} == {
        ItemClass.MATCHED,
        ItemClass.AWAITING_PROVIDER,
        ItemClass.HELD_IN_SUSPENSE,
    }
    with pytest.raises(ValueError, match="nothing"):
        classify(Comparison(provider=None, evidence=None, ledger=None))


def test_the_reference_penpay_wrote_is_the_last_id_in_a_statement_line() -> None:
    line = (
        "Transfer from CR90000001 to Payment Agent X (CR90000000) Transaction reference: "
        "0B7A2C3D-1111-4222-8333-444455556666 Timestamp: 2026-03-01. "
        "Client note: PenPay 01a24ad1-e57e-712f-81ed-d23dce7366b6"
    )
    assert transaction_hint(line) == "01a24ad1-e57e-712f-81ed-d23dce7366b6"
    assert transaction_hint("no reference") is None


def test_only_a_confirmed_paybill_payment_put_in_suspense_is_held_there() -> None:
    assert held_in_suspense("SUSPENSE")
    assert held_in_suspense("REFUNDED")  # held in suspense until M-Pesa reversed it
    # only the validation reached PenPay (or nothing did): the money is unknown at PenPay
    assert not any(held_in_suspense(s) for s in ("VALIDATED", "REFUSED", None))
    assert not held_in_suspense("DEPOSIT")  # explained by its MpesaRequest instead

"""The soak's scripted operator chooses a review action from the evidence (proving.chaos.operator)."""

from __future__ import annotations

import pytest

from proving.chaos.operator import APPROVER, PROPOSER, choose, choose_paybill

pytestmark = pytest.mark.unit

ALL = frozenset({"RESOLVE_COMPLETED", "REFUND", "FAIL", "RETRY"})


def test_a_deposit_deriv_holds_is_resolved_on_deriv_s_id() -> None:
    picked = choose(
        type_="DEPOSIT",
        evidence={"MPESA_REQUEST": "CONFIRMED", "DERIV_TRANSFER": "FAILED"},
        possible=frozenset({"RESOLVE_COMPLETED", "REFUND"}),
        deriv_paid_as=4242,
        payout_receipt=None,
    )
    assert picked is not None and (picked.kind, picked.deriv_transaction_id) == ("RESOLVE_COMPLETED", 4242)


def test_a_deposit_deriv_refused_and_does_not_hold_is_refunded() -> None:
    picked = choose(
        type_="DEPOSIT",
        evidence={"MPESA_REQUEST": "CONFIRMED", "DERIV_TRANSFER": "FAILED"},
        possible=frozenset({"RESOLVE_COMPLETED", "REFUND"}),
        deriv_paid_as=None,
        payout_receipt=None,
    )
    assert picked is not None and picked.kind == "REFUND"


def test_a_push_with_no_answer_is_failed_and_retried_once_the_provider_says_paid() -> None:
    evidence = {"MPESA_REQUEST": "SENT"}
    possible = frozenset({"FAIL", "RETRY"})
    first = choose(
        type_="DEPOSIT", evidence=evidence, possible=possible, deriv_paid_as=None, payout_receipt=None
    )
    assert first is not None and first.kind == "FAIL"
    then = choose(
        type_="DEPOSIT",
        evidence=evidence,
        possible=possible,
        deriv_paid_as=None,
        payout_receipt=None,
        denied=frozenset({"FAIL"}),
    )
    assert then is not None and then.kind == "RETRY"


def test_a_payout_m_pesa_made_is_resolved_on_its_receipt_else_retried() -> None:
    evidence = {"DERIV_WITHDRAWAL": "CONFIRMED", "MPESA_DISBURSEMENT": "SENT"}
    possible = frozenset({"RESOLVE_COMPLETED", "RETRY"})
    paid = choose(
        type_="WITHDRAWAL",
        evidence=evidence,
        possible=possible,
        deriv_paid_as=None,
        payout_receipt="QKX1234567",
    )
    assert paid is not None and (paid.kind, paid.mpesa_receipt) == ("RESOLVE_COMPLETED", "QKX1234567")
    unpaid = choose(
        type_="WITHDRAWAL", evidence=evidence, possible=possible, deriv_paid_as=None, payout_receipt=None
    )
    assert unpaid is not None and unpaid.kind == "RETRY"


def test_nothing_is_chosen_when_nothing_is_possible() -> None:
    assert (
        choose(
            type_="DEPOSIT",
            evidence={"MPESA_REQUEST": "REVIEW"},
            possible=frozenset(),
            deriv_paid_as=None,
            payout_receipt=None,
        )
        is None
    )


def test_an_item_of_another_kind_is_left_alone() -> None:
    assert (
        choose(type_="SUSPENSE", evidence={}, possible=ALL, deriv_paid_as=None, payout_receipt=None) is None
    )


USERS = frozenset({"254755395007", "254755395003"})


def _paybill(**given: object) -> str:
    arguments: dict[str, object] = {
        "msisdn_shown": "0755***007",
        "payer_phone": "254755395007",
        "user_phones": USERS,
        "proposed_by": "",
    }
    arguments.update(given)
    return choose_paybill(**arguments).action  # type: ignore[arg-type]


def test_a_suspense_payment_a_user_paid_is_proposed_as_theirs_then_approved() -> None:
    assert _paybill() == "PROPOSE"
    assert _paybill(proposed_by=PROPOSER) == "APPROVE"


def test_a_suspense_payment_no_user_paid_is_left_for_a_person() -> None:
    choice = choose_paybill(
        msisdn_shown="0712***678", payer_phone="254712345678", user_phones=USERS, proposed_by=""
    )
    assert choice.action == "LEAVE" and "no user of ours" in choice.why


def test_a_stranger_s_payment_is_refunded_once_per_soak_and_its_refund_seen_through() -> None:
    stranger = {"msisdn_shown": "0712***678", "payer_phone": "254712345678"}
    assert _paybill(**stranger, may_refund=True) == "REFUND"
    assert _paybill(**stranger, may_refund=False) == "LEAVE"  # one per soak: the rest for a person
    assert _paybill(**stranger, refund_status="PROPOSED", refund_proposed_by=PROPOSER) == "APPROVE_REFUND"
    assert _paybill(**stranger, refund_status="PROPOSED", refund_proposed_by="ops-mary") == "LEAVE"
    # an answer lost: approving again asks M-Pesa (never sends again); an accepted one waits
    assert _paybill(**stranger, refund_status="UNKNOWN", refund_proposed_by=PROPOSER) == "APPROVE_REFUND"
    assert _paybill(**stranger, refund_status="ACCEPTED", refund_proposed_by=PROPOSER) == "LEAVE"
    # a user's payment is never refunded: it is theirs
    assert _paybill(may_refund=True) == "PROPOSE"


def test_a_suspense_payment_is_left_when_the_books_do_not_back_the_payer() -> None:
    assert _paybill(payer_phone=None) == "LEAVE"  # M-Pesa's books do not show it
    assert _paybill(msisdn_shown="0711***007") == "LEAVE"  # the books name another payer


def test_a_suspense_payment_someone_else_proposed_or_penpay_refused_is_left() -> None:
    assert _paybill(proposed_by=APPROVER) == "LEAVE"
    assert _paybill(proposed_by="ops-mary") == "LEAVE"
    refused = choose_paybill(
        msisdn_shown="0755***007",
        payer_phone="254755395007",
        user_phones=USERS,
        proposed_by="",
        refused="the amount is below the minimum",
    )
    assert refused.action == "LEAVE" and "below the minimum" in refused.why

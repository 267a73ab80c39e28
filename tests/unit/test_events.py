from __future__ import annotations

import json
from datetime import datetime

import pytest

from domain.payments.events import TransactionCreated
from domain.payments.status import TransactionStatus, TransactionType
from domain.shared.ids import TransactionId, UserId
from domain.wallet.money import Currency, Money

pytestmark = pytest.mark.unit


def _event(now: datetime) -> TransactionCreated:
    return TransactionCreated(
        transaction_id=TransactionId.new(),
        version=1,
        user_id=UserId.new(),
        type=TransactionType.DEPOSIT,
        status=TransactionStatus.PENDING,
        amount=Money(150_000, Currency.KES),
        occurred_at=now,
    )


def test_event_type_is_the_class_name(now: datetime) -> None:
    assert _event(now).event_type == "TransactionCreated"
    assert TransactionCreated.event_type == "TransactionCreated"


def test_payload_is_plain_json_with_money_as_minor_units_and_ids_as_text(now: datetime) -> None:
    event = _event(now)
    payload = event.payload()
    assert json.loads(json.dumps(payload)) == payload
    assert payload["amount"] == {"amount_minor": 150_000, "currency": "KES"}
    assert payload["transaction_id"] == str(event.transaction_id)
    assert payload["type"] == "DEPOSIT"
    assert payload["version"] == 1


def test_envelope_fields_are_not_repeated_in_the_payload(now: datetime) -> None:
    payload = _event(now).payload()
    assert "event_id" not in payload
    assert "occurred_at" not in payload


def test_event_knows_its_aggregate_and_version(now: datetime) -> None:
    event = _event(now)
    assert event.aggregate_type == "Transaction"
    assert event.aggregate_id() == str(event.transaction_id)
    assert event.aggregate_version() == 1
    assert event.event_id.value.version == 7

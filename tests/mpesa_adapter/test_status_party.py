"""Whose payout a Transaction Status result describes, from its party names (pure parsing)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mpesa_adapter.callback_parsing import parse_status_result

pytestmark = pytest.mark.unit


def _status(*params: dict[str, Any]) -> Any:
    body = {
        "Result": {
            "ConversationID": "AG_20180223_0000493344ae97d86f75",
            "OriginatorConversationID": "3213-416199-2",
            "ReferenceData": {"ReferenceItem": {"Key": "Occasion", "Value": "PENPAY-abc"}},
            "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "ResultParameters": {"ResultParameter": list(params)},
            "ResultType": 0,
            "TransactionID": "MBN0000000",
        }
    }
    raw = json.dumps(body).encode()
    return parse_status_result(json.loads(raw), raw)


@pytest.mark.parametrize(
    ("params", "party"),
    [
        # the portal sample: DebitPartyName twice, our shortcode first
        (
            [
                {"Key": "DebitPartyName", "Value": "600310 - Safaricom333"},
                {"Key": "DebitPartyName", "Value": "254708374149 - John Doe"},
            ],
            "254708374149",
        ),
        ([{"Key": "ReceiverPartyPublicName", "Value": "0712345*** - Jane Doe"}], "0712345***"),
        ([{"Key": "CreditPartyName", "Value": "2547 ***** 126 - Jane Doe"}], "2547 ***** 126"),
        ([{"Key": "DebitPartyName", "Value": "600310 - Safaricom333"}], None),  # only our shortcode
        ([{"Key": "DebitPartyName"}], None),
        ([], None),
    ],
)
def test_the_customer_is_the_party_that_shows_a_phone_number(
    params: list[dict[str, Any]], party: str | None
) -> None:
    result = _status(*params)
    assert result.party == party
    assert result.named_originator_conversation_id is None  # names no id: only the party can tell

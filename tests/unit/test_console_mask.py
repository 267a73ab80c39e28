"""The console masks customers' numbers and names, and leaves ids an operator needs alone."""

from __future__ import annotations

import json

import pytest

from penpay_api.console.mask import mask_fields, mask_phone, mask_text

pytestmark = pytest.mark.unit


def test_phone_numbers_keep_only_the_visible_digits() -> None:
    assert mask_phone("254712345678") == "2547*****678"
    assert mask_phone("call 0712345678 now") == "call 0712***678 now"
    assert mask_phone("+254712345678") == "+254******678"


def test_ids_with_digits_are_not_taken_for_phone_numbers() -> None:
    fields = {
        "checkout_request_id": "ws_CO_061220260646721254712345678",
        "originator_conversation_id": "PENPAY-01a24ad20146457a41a077ea374fc28-R",
        "phone_number": "254712345678",
    }
    masked = mask_fields(fields)
    assert masked["checkout_request_id"] == fields["checkout_request_id"]
    assert masked["originator_conversation_id"] == fields["originator_conversation_id"]
    assert masked["phone_number"] == "2547*****678"


def test_a_provider_answer_hides_names_and_numbers() -> None:
    body = json.dumps(
        {
            "Result": {
                "ReceiverPartyPublicName": "254712345678 - Jane Wanjiru",
                "PhoneNumber": 254712345678,
                "Amount": 1300,
                "TransactionID": "UL6DTM4WU5",
            }
        }
    )
    masked = json.loads(mask_text(body))["Result"]
    assert masked["ReceiverPartyPublicName"] == "2547*****678 - ***"
    assert masked["PhoneNumber"] == "2547*****678"
    assert masked["Amount"] == 1300 and masked["TransactionID"] == "UL6DTM4WU5"
    assert "Jane" not in mask_text(body)


def test_daraja_name_value_pairs_are_masked_by_their_label() -> None:
    body = json.dumps(
        {
            "Item": [
                {"Name": "PhoneNumber", "Value": 254712345678},
                {"Name": "FirstName", "Value": "Wanjiru"},
                {"Name": "MpesaReceiptNumber", "Value": "QKX1234567"},
            ],
            "ResultParameter": [{"Key": "ReceiverPartyPublicName", "Value": "254712345678 - Jane Wanjiru"}],
        }
    )
    masked = json.loads(mask_text(body))
    assert masked["Item"] == [
        {"Name": "PhoneNumber", "Value": "2547*****678"},
        {"Name": "FirstName", "Value": "***"},
        {"Name": "MpesaReceiptNumber", "Value": "QKX1234567"},
    ]
    assert masked["ResultParameter"] == [{"Key": "ReceiverPartyPublicName", "Value": "2547*****678 - ***"}]

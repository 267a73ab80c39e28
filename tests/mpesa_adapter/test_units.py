"""Pure pieces: strict JSON, callback shapes, addresses, credentials, Nairobi timestamps, amounts."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric import padding

from mpesa_adapter import callback_parsing as p
from mpesa_adapter.access_token import TokenCache
from mpesa_adapter.callback_server import client_address
from mpesa_adapter.client import normalise_msisdn, originator_conversation_id_for, whole_shillings
from mpesa_adapter.config import DarajaConfig, parse_networks
from mpesa_adapter.errors import InvalidRequest
from mpesa_adapter.routes import CallbackKind, callback_url
from mpesa_adapter.security import load_public_key, security_credential, stk_password, stk_timestamp
from mpesa_adapter.simulator.credentials import CredentialChecker

pytestmark = pytest.mark.unit


def test_strict_json_keeps_amounts_exact() -> None:
    data = p.strict_json(b'{"a": 10500.00, "b": 1.1}')
    assert data == {"a": Decimal("10500.00"), "b": Decimal("1.1")}
    assert p.cents(Decimal("10500.00")) == 1_050_000 and p.cents(Decimal("1.005")) is None


@pytest.mark.parametrize("raw", [b'{"a":1,"a":2}', b"NaN", b'{"a": -Infinity}', b"[]", b"1", b"\xff", b"{"])
def test_strict_json_refuses(raw: bytes) -> None:
    with pytest.raises(p.MalformedCallback):
        p.strict_json(raw)


def test_stk_callback_shapes() -> None:
    raw = json.dumps(
        {
            "Body": {
                "stkCallback": {
                    "MerchantRequestID": "29115-34620561-1",
                    "CheckoutRequestID": "ws_CO_191220191020363925",
                    "ResultCode": 0,
                    "ResultDesc": "The service request is processed successfully.",
                    "CallbackMetadata": {
                        "Item": [
                            {"Name": "PhoneNumber", "Value": "0722000***"},
                            {"Name": "Balance"},
                            {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
                            {"Name": "Amount", "Value": 1.00},
                            {"Name": "TransactionDate", "Value": 20191219102115},
                        ]
                    },
                }
            }
        }
    ).encode()
    cb = p.parse_stk_callback(p.strict_json(raw), raw)
    assert (cb.succeeded, cb.amount, cb.receipt, cb.transaction_date) == (
        True,
        Decimal("1.0"),
        "NLJ7RT61SV",
        "20191219102115",
    )
    assert cb.phone is None and cb.phone_masked
    failed = p.parse_stk_callback(
        {
            "Body": {
                "stkCallback": {
                    "MerchantRequestID": "m",
                    "CheckoutRequestID": "c",
                    "ResultCode": "SFC_IC0003",
                    "ResultDesc": "[STK_CB - ]x",
                }
            }
        },
        b"",
    )
    assert (failed.succeeded, failed.result_code, failed.amount) == (False, "SFC_IC0003", None)


def test_result_envelope_tolerances() -> None:
    data = {
        "Result": {
            "ResultType": "0",
            "ResultCode": "0",
            "ResultDesc": "ok",
            "ConversationID": "AG_1",
            "OriginatorConversationID": "3213-416199-2",
            "ReferenceData": {"ReferenceItem": [{"Key": "Occasion", "Value": "PENPAY-abc"}]},
            "ResultParameters": {
                "ResultParameter": {"Key": "Originator Conversation ID", "Value": "PENPAY-abc"}
            },
        }
    }
    status = p.parse_status_result(data, b"")
    assert status.subject_originator_conversation_id == "PENPAY-abc" and status.envelope.succeeded
    dup = {
        "Result": {
            "ResultCode": 0,
            "ResultDesc": "ok",
            "OriginatorConversationID": "q",
            "ResultParameters": {
                "ResultParameter": [
                    {"Key": "DebitPartyName", "Value": "600310 - Org"},
                    {"Key": "DebitPartyName", "Value": "2547 - J"},
                    {"Key": "TransactionReason"},
                    {"Key": "TransactionStatus", "Value": "Completed"},
                    {"Key": "Amount", "Value": "300"},
                    {"Key": "ReceiptNo", "Value": "MBN31H462N"},
                ]
            },
            "ReferenceData": {"ReferenceItem": {"Key": "Occasion"}},
        }
    }
    st = p.parse_status_result(dup, b"")
    assert (st.completed, st.amount, st.receipt, st.subject_originator_conversation_id) == (
        True,
        Decimal("300"),
        "MBN31H462N",
        None,
    )
    b2c_fail = p.parse_b2c_result(
        {
            "Result": {
                "ResultType": 0,
                "ResultCode": 2001,
                "ResultDesc": "x",
                "OriginatorConversationID": "o",
                "ConversationID": "c",
                "TransactionID": "SG722NMVXQ",
            }
        },
        b"",
    )
    assert b2c_fail.receipt is None and not b2c_fail.succeeded  # TransactionID is not a receipt
    with pytest.raises(p.MalformedCallback):
        p.parse_result({"Result": {"ResultCode": 1.5, "OriginatorConversationID": "o"}}, b"")


def test_client_address_and_trusted_proxies() -> None:
    trusted = parse_networks("127.0.0.1, 10.0.0.0/8")
    assert client_address("1.2.3.4", "196.201.214.200", trusted) == "1.2.3.4"  # untrusted peer
    assert client_address("127.0.0.1", "196.201.214.200", trusted) == "196.201.214.200"
    assert client_address("127.0.0.1", "9.9.9.9, 196.201.214.200, 10.0.0.7", trusted) == "196.201.214.200"
    assert client_address("127.0.0.1", "garbage", trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", None, trusted) == "127.0.0.1"


def test_security_credential_is_pkcs1v15_over_the_raw_password() -> None:
    checker = CredentialChecker.from_seed("unit-test-seed")
    key = load_public_key(checker.certificate_pem)
    first, second = security_credential(key, "Safaricom999!*!"), security_credential(key, "Safaricom999!*!")
    assert first != second and len(first) == 344  # randomised padding; 256 bytes base64
    assert checker.decrypt(first) == "Safaricom999!*!" == checker.decrypt(second)
    assert checker._key.decrypt(base64.b64decode(first), padding.PKCS1v15()) == b"Safaricom999!*!"


def test_stk_password_and_nairobi_timestamp() -> None:
    ts = stk_timestamp(datetime(2021, 6, 28, 6, 24, 8, tzinfo=UTC))
    assert ts == "20210628092408"  # 06:24 UTC is 09:24 EAT
    expected = base64.b64encode(b"174379" + b"passkey" + b"20210628092408").decode()
    assert stk_password("174379", "passkey", ts) == expected
    with pytest.raises(ValueError):
        stk_timestamp(datetime(2021, 6, 28))


def test_amounts_and_phones() -> None:
    assert whole_shillings(150_00, minimum=1) == 150
    for bad in (150_50, 0, 250_001_00, True):
        with pytest.raises(InvalidRequest):
            whole_shillings(bad, minimum=1)
    for text in ("0712345678", "+254712345678", "712345678", "254712345678", "0110000000"):
        assert normalise_msisdn(text) in ("254712345678", "254110000000")
    for bad_phone in ("0812345678", "2547123", "abc"):
        with pytest.raises(InvalidRequest):
            normalise_msisdn(bad_phone)


def test_ids_urls_and_config_repr() -> None:
    import uuid

    u = uuid.UUID("0190a5b2-0000-7000-8000-000000000001")
    assert originator_conversation_id_for(u) == originator_conversation_id_for(u)
    url = callback_url("https://cb.example/", CallbackKind.STK, "tok")
    assert url == "https://cb.example/payments/stk/tok" and "mpesa" not in url
    cfg = DarajaConfig("http://x", "key", "the-secret", "174379", "the-passkey", "testapi", "the-password")
    assert (
        "the-secret" not in repr(cfg) and "the-passkey" not in repr(cfg) and "the-password" not in repr(cfg)
    )


async def test_token_cache_single_flight_and_conditional_invalidate() -> None:
    now = [0.0]
    cache = TokenCache(margin=60, monotonic=lambda: now[0])
    calls = 0

    async def fetch() -> tuple[str, float]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return f"t{calls}", 3599.0

    assert set(await asyncio.gather(*(cache.get(fetch) for _ in range(10)))) == {"t1"}
    cache.invalidate("stale-other-token")  # not the current token: no effect
    assert await cache.get(fetch) == "t1"
    now[0] = 3599 - 59  # inside the refresh margin
    assert await cache.get(fetch) == "t2"
    cache.invalidate("t2")
    assert await cache.get(fetch) == "t3" and calls == 3


def _status(occasion: str | None, named: str | None, receipt: str | None) -> p.TransactionStatusResult:
    params = [{"Key": "OriginatorConversationID", "Value": named}, {"Key": "ReceiptNo", "Value": receipt}]
    reference = {"Key": "Occasion", **({"Value": occasion} if occasion else {})}
    data = {
        "Result": {
            "ResultCode": 0,
            "ResultDesc": "ok",
            "ReferenceData": {"ReferenceItem": reference},
            "ResultParameters": {"ResultParameter": [x for x in params if x["Value"]]},
        }
    }
    return p.parse_status_result(data, b"")


def test_a_status_result_is_about_what_its_occasion_asked() -> None:
    assert not _status("PENPAY-a", "PENPAY-a", "UKZ0000001").names_another_than_asked()
    assert not _status("UKZ0000001", "PENPAY-a", "UKZ0000001").names_another_than_asked()  # by receipt
    assert not _status(None, "PENPAY-b", None).names_another_than_asked()  # nothing echoed: no claim
    assert _status("PENPAY-a", "PENPAY-b", "UKZ0000002").names_another_than_asked()
    other = _status("PENPAY-a", "PENPAY-b", None)
    assert other.names_another_than_asked() and other.subject_originator_conversation_id == "PENPAY-b"
    # The subject only in the Occasion (no OriginatorConversationID parameter): the receipt is then
    # the payout's, not the id asked about, and is no sign of another payment.
    only_occasion = _status("PENPAY-a", None, "UKZ0000001")
    assert not only_occasion.names_another_than_asked()
    assert only_occasion.subject_originator_conversation_id == "PENPAY-a"


def test_only_darajas_own_business_refusal_is_not_a_set_up_error() -> None:
    from mpesa_adapter import errors as e

    assert e.is_setup_error(e.UnexpectedAnswer("HTTP404", "<html>", None, 404))
    assert e.is_setup_error(e.UnexpectedAnswer("HTTP200", "<html>", None, 200))  # a portal page
    assert e.is_setup_error(e.DarajaError("404.001.01", "Resource not found", "r", 404))
    assert e.is_setup_error(e.DarajaError("401.002.01", "Invalid token", "r", 401))
    assert e.is_setup_error(e.DarajaConfigurationError("500.001.1001", "Wrong credentials", "r", 500))
    assert e.is_setup_error(e.AuthenticationFailed("HTTP400", "", None, 400))
    assert not e.is_setup_error(e.DarajaError("400.002.02", "Bad Request - Invalid PhoneNumber", "r", 400))
    assert not e.is_setup_error(e.SubscriberLocked("500.001.1001", "Unable to lock subscriber", "r", 500))

"""The OpenAPI document of PenPay's own services tells the truth: the servicers' page-size limits,
the domain's status values, the fields a request must carry, the fields an answer always has, and
the proto comments as descriptions."""

from __future__ import annotations

from typing import Any

import pytest

from application.wallet.queries import MAX_PAGE_SIZE as WALLET_MAX_PAGE
from domain.payments.status import TransactionStatus
from penpay_api.http import discover_services
from penpay_api.http.app import Bridge, BridgeConfig
from penpay_api.http.discovery import packages_for
from penpay_api.services.dev import MAX_PAGE_SIZE as DEV_MAX_PAGE
from penpay_api.services.ops import DEFAULT_KYC_PAGE, DEFAULT_QUEUE_PAGE, MAX_KYC_PAGE, MAX_QUEUE_PAGE
from persistence.transaction_search import MAX_MATCHES

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    import json

    services = discover_services(packages_for("development"))
    return dict(json.loads(Bridge(services, "127.0.0.1:1", BridgeConfig()).openapi))


def _param(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    params = document["paths"][path]["get"]["parameters"]
    return dict(next(p for p in params if p["name"] == name))


def _schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(document["components"]["schemas"][name])


def test_page_sizes_carry_the_servicers_limits(document: dict[str, Any]) -> None:
    queue = _param(document, "/v1/ops/review_queue", "page_size")["schema"]
    assert (queue["minimum"], queue["maximum"], queue["default"]) == (0, MAX_QUEUE_PAGE, DEFAULT_QUEUE_PAGE)
    search = _param(document, "/v1/ops/transaction_search", "page_size")["schema"]
    assert search["maximum"] == MAX_MATCHES
    kyc = _param(document, "/v1/ops/kyc_attestations", "page_size")["schema"]
    assert (kyc["minimum"], kyc["maximum"], kyc["default"]) == (0, MAX_KYC_PAGE, DEFAULT_KYC_PAGE)
    dev = _param(document, "/v1/dev/sent_messages", "page_size")["schema"]
    assert dev["maximum"] == DEV_MAX_PAGE
    wallet = [
        p["schema"]
        for item in document["paths"].values()
        for op in item.values()
        for p in op.get("parameters", [])
        if op["operationId"] == "WalletService_ListLedgerEntries" and p["name"] == "page_size"
    ]
    assert wallet and wallet[0]["maximum"] == WALLET_MAX_PAGE


def test_status_fields_list_their_values(document: dict[str, Any]) -> None:
    item = _schema(document, "penpay.ops.v1.ReviewItem")["properties"]
    assert item["status"]["enum"] == [s.value for s in TransactionStatus]
    assert item["type"]["enum"] == ["DEPOSIT", "WITHDRAWAL"]
    statuses = _param(document, "/v1/ops/review_queue", "statuses")["schema"]
    assert statuses["items"]["enum"] == ["NEEDS_REVIEW", "OUTCOME_UNKNOWN"]
    user_view = _schema(document, "penpay.payments.v1.Transaction")["properties"]["status"]
    assert "awaiting_mpesa" in user_view["enum"] and "completed" in user_view["enum"]


def test_requests_require_what_the_servers_refuse_to_go_without(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/ops/review_actions"]["post"]["requestBody"]
    propose = body["content"]["application/json"]
    schema = _schema(document, propose["schema"]["$ref"].rsplit("/", 1)[-1])
    assert schema["required"] == ["transaction_id", "kind", "reason"]
    assert schema["properties"]["reason"]["maxLength"] == 255
    login = _schema(document, "penpay.auth.v1.LoginRequest")
    assert login["required"] == ["login", "password"]


def test_answers_list_the_fields_they_always_carry(document: dict[str, Any]) -> None:
    queue = _schema(document, "penpay.ops.v1.ListReviewQueueResponse")
    assert queue["required"] == ["items", "next_page_token"]
    item = _schema(document, "penpay.ops.v1.ReviewItem")
    assert "transaction_id" in item["required"] and "evidence" in item["required"]
    assert "amount" not in item["required"]  # a message field is left out when unset
    assert _schema(document, "penpay.common.v1.Money")["required"] == ["amount_cents", "currency"]


def test_descriptions_come_from_the_proto_comments(document: dict[str, Any]) -> None:
    operation = document["paths"]["/v1/ops/review_queue"]["get"]
    assert operation["description"].startswith("The transactions that need a person")
    item = _schema(document, "penpay.ops.v1.ReviewItem")
    assert item["description"] == "A transaction that needs a person, with everything known about it."
    kind = _schema(document, "penpay.ops.v1.ProposeReviewActionRequest")["properties"]["kind"]
    assert "REVIEW_ACTION_KIND_REFUND: Give the customer's KES back by B2C" in kind["description"]
    tags = {t["name"]: t["description"] for t in document["tags"]}
    assert "four-eyes" in tags["OpsService"]
    page_size = _param(document, "/v1/ops/review_queue", "page_size")
    assert page_size["description"] == "1 to 100; 0 means 20."

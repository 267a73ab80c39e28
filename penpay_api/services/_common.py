"""Small conversions shared by the servicers."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf import timestamp_pb2

from domain.shared.ids import UserId
from domain.wallet.money import Money
from penpay.common.v1 import money_pb2
from penpay_api.context import current_call
from penpay_api.errors import RpcFailure


def caller_id() -> UserId:
    """The user named by the call's access token (the authorisation layer made sure there is one)."""
    principal = current_call().principal
    user_id = principal.user_id if principal is not None else None
    if user_id is None:
        raise RpcFailure.build(
            grpc.StatusCode.UNAUTHENTICATED, "a user's access token is required", reason="UNAUTHENTICATED"
        )
    return user_id


def caller_device_id() -> str:
    principal = current_call().principal
    return principal.device_id if principal is not None else ""


def client_ip() -> str | None:
    return current_call().client_ip


def timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def from_timestamp(stamp: timestamp_pb2.Timestamp) -> datetime:
    moment: datetime = stamp.ToDatetime(tzinfo=UTC)
    return moment


def money(value: Money | None) -> money_pb2.Money | None:
    if value is None:
        return None
    return money_pb2.Money(amount_cents=value.amount_minor, currency=value.currency.value)


def money_of(cents: int, currency: str) -> money_pb2.Money:
    return money_pb2.Money(amount_cents=cents, currency=currency)

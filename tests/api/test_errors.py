"""Errors as gRPC statuses with google.rpc details: the mapping itself (unit) and as a client
receives it (integration): BadRequest field violations, ErrorInfo reasons, RetryInfo, and
INTERNAL that leaks nothing."""

from __future__ import annotations

from collections.abc import Iterable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from application.identity.errors import ComplianceRefused, RateLimited, WeakPassword
from application.payments.errors import DerivBusy, ServiceUnavailable, TransactionNotFound
from domain.payments.errors import InvalidEvidence
from domain.shared.errors import DomainError
from domain.wallet.errors import InvalidAmount
from penpay.auth.v1 import auth_pb2
from penpay.payments.v1 import payments_pb2
from penpay_api.errors import DETAILS_KEY, ParsedStatus, RpcFailure, parse_status, to_failure

from .conftest import Harness, StartApi, details_of, trailer

SECRET = "hunter2-db-password"


def _status(failure: RpcFailure) -> status_pb2.Status:
    return status_pb2.Status.FromString(failure.status)


def _parsed(failure: RpcFailure) -> ParsedStatus:
    parsed = parse_status(failure.trailing_metadata)
    assert parsed is not None
    return parsed


def _info(failure: RpcFailure) -> error_details_pb2.ErrorInfo:
    info = _parsed(failure).error_info
    assert info is not None, "no ErrorInfo in the details"
    return info


@pytest.mark.unit
def test_a_bad_field_is_invalid_argument_with_a_field_violation_and_error_info() -> None:
    failure = to_failure(WeakPassword("at least 12 characters, please"))
    parsed = _parsed(failure)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert parsed.error_info is not None
    assert parsed.error_info.reason == "WEAK_PASSWORD" and parsed.error_info.domain == "penpay.io"
    assert [(v.field, v.description) for v in parsed.violations] == [
        ("password", "at least 12 characters, please")
    ]
    assert failure.message == "at least 12 characters, please"


@pytest.mark.unit
def test_domain_field_names_become_request_field_names() -> None:
    assert [v.field for v in _parsed(to_failure(InvalidAmount("must be positive"))).violations] == [
        "amount_cents"
    ]
    aliased = to_failure(DomainError("bad", field="code"), field_aliases={"code": "verification_code"})
    assert [v.field for v in _parsed(aliased).violations] == ["verification_code"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TransactionNotFound("no such transaction"), grpc.StatusCode.NOT_FOUND),
        (ServiceUnavailable("Deriv is not answering"), grpc.StatusCode.UNAVAILABLE),
        (
            ComplianceRefused("verify your phone", rule="PHONE_NOT_VERIFIED"),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (DomainError("something refused"), grpc.StatusCode.FAILED_PRECONDITION),
        (DomainError("bad input", field="x"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_codes_by_error(error: DomainError, code: grpc.StatusCode) -> None:
    failure = to_failure(error)
    assert failure.code is code
    assert _info(failure).reason == error.reason
    assert _status(failure).code == code.value[0]


@pytest.mark.unit
def test_a_rate_limit_carries_retry_info_and_a_retry_after_trailer() -> None:
    failure = to_failure(RateLimited("too many attempts", retry_after_seconds=42))
    assert failure.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _parsed(failure).retry_delay_seconds == 42
    assert ("retry-after", "42") in failure.trailing_metadata


@pytest.mark.unit
def test_deriv_holding_a_call_back_is_unavailable_with_retry_info() -> None:
    failure = to_failure(DerivBusy("confirm again in 7 s", retry_after_seconds=7))
    assert failure.code is grpc.StatusCode.UNAVAILABLE
    assert _info(failure).reason == "DERIV_BUSY"
    assert _parsed(failure).retry_delay_seconds == 7
    assert ("retry-after", "7") in failure.trailing_metadata


@pytest.mark.unit
def test_compliance_names_its_rule() -> None:
    failure = to_failure(ComplianceRefused("daily limit", rule="DAILY_LIMIT"))
    assert _info(failure).metadata["rule"] == "DAILY_LIMIT"


@pytest.mark.unit
@pytest.mark.parametrize(
    "error",
    [RuntimeError(f"connect to mysql://penpay:{SECRET}@db failed"), InvalidEvidence(f"row {SECRET} broken")],
)
def test_unexpected_errors_are_internal_and_say_nothing(error: Exception) -> None:
    failure = to_failure(error, request_id="req-1")
    assert failure.code is grpc.StatusCode.INTERNAL and failure.message == "internal error"
    assert SECRET.encode() not in failure.status
    info = _info(failure)
    assert info.reason == "INTERNAL" and info.metadata["request_id"] == "req-1"


@pytest.mark.unit
def test_parse_status_reads_every_detail() -> None:
    failure = to_failure(RateLimited("slow down", retry_after_seconds=3))
    status = _status(failure)
    kinds = {d.type_url.rsplit("/", 1)[1] for d in status.details}
    assert kinds == {"google.rpc.ErrorInfo", "google.rpc.RetryInfo"}
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert info.reason == "RATE_LIMITED"
    assert parse_status([(DETAILS_KEY, failure.status)]) is not None and parse_status([]) is None


# --- as clients receive them ---------------------------------------------------------------


def _broken_handler() -> grpc.GenericRpcHandler:
    async def explode(request: object, context: grpc.aio.ServicerContext) -> object:
        raise RuntimeError(f"connect to mysql://penpay:{SECRET}@db failed")

    return grpc.method_handlers_generic_handler(
        "penpay.test.v1.BrokenService",
        {
            "Explode": grpc.unary_unary_rpc_method_handler(
                explode,
                request_deserializer=payments_pb2.GetTransactionRequest.FromString,
                response_serializer=payments_pb2.GetTransactionResponse.SerializeToString,
            )
        },
    )


def _all_text(items: Iterable[tuple[str, object]]) -> str:
    return " ".join(f"{k}={v!r}" for k, v in items)


@pytest.mark.integration
async def test_an_unexpected_exception_reaches_the_client_as_a_bare_internal(start_api: StartApi) -> None:
    api = await start_api(extra_handlers=[_broken_handler()], payments=None)
    account = await api.new_account()
    call = api.channel.unary_unary(
        "/penpay.test.v1.BrokenService/Explode",
        request_serializer=payments_pb2.GetTransactionRequest.SerializeToString,
        response_deserializer=payments_pb2.GetTransactionResponse.FromString,
    )(payments_pb2.GetTransactionRequest(), metadata=(*account.auth, ("x-request-id", "req-explode-1")))
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await call
    error = failed.value
    assert error.code() == grpc.StatusCode.INTERNAL and error.details() == "internal error"
    info = details_of(error).error_info
    assert info.reason == "INTERNAL" and info.metadata["request_id"] == "req-explode-1"
    assert SECRET not in _all_text(error.trailing_metadata()) and "mysql" not in error.debug_error_string()
    assert ("x-request-id", "req-explode-1") in list(await call.initial_metadata())


@pytest.mark.integration
async def test_a_login_storm_is_resource_exhausted_with_retry_info(api: Harness) -> None:
    account = await api.new_account()  # its login is the first of 10 allowed per account
    codes = []
    for _ in range(10):
        try:
            await api.auth.Login(
                auth_pb2.LoginRequest(
                    login=account.email,
                    password="wrong password 9",
                    device_id="device-storm-1",
                    device_name="x",
                )
            )
        except grpc.aio.AioRpcError as error:
            codes.append(error.code())
            last = error
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 9 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
    parsed = details_of(last)
    assert parsed.error_info.reason == "RATE_LIMITED" and parsed.retry_delay_seconds > 0
    assert trailer(last, "retry-after") == str(parsed.retry_delay_seconds)


@pytest.mark.integration
async def test_a_bad_id_names_its_field(api: Harness) -> None:
    account = await api.new_account()
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await api.payments.GetTransaction(
            payments_pb2.GetTransactionRequest(transaction_id="not-a-uuid"), metadata=account.auth
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    parsed = details_of(bad.value)
    assert parsed.error_info.reason == "INVALID_IDENTIFIER"
    assert [v.field for v in parsed.violations] == ["transaction_id"]


@pytest.mark.integration
async def test_another_users_transaction_is_not_found(api: Harness) -> None:
    from domain.shared.ids import UserId
    from persistence.unit_of_work import SqlUnitOfWork
    from tests.integration.payments_helpers import deposit_key, new_deposit

    alice, bob = await api.new_account(), await api.new_account()
    owner = UserId.from_str(alice.user_id)
    async with SqlUnitOfWork(api.core.engine, clock=api.clock) as uow:
        tx = new_deposit(owner, deposit_key(owner, "errors-1"), now=api.clock.now())
        await uow.transactions.add(tx)
        await uow.commit()
    mine = await api.payments.GetTransaction(
        payments_pb2.GetTransactionRequest(transaction_id=str(tx.id)), metadata=alice.auth
    )
    assert mine.transaction.transaction_id == str(tx.id) and mine.transaction.user_id == alice.user_id
    with pytest.raises(grpc.aio.AioRpcError) as theirs:
        await api.payments.GetTransaction(
            payments_pb2.GetTransactionRequest(transaction_id=str(tx.id)), metadata=bob.auth
        )
    assert theirs.value.code() == grpc.StatusCode.NOT_FOUND
    assert details_of(theirs.value).error_info.reason == "TRANSACTION_NOT_FOUND"
    listed = await api.payments.ListTransactions(payments_pb2.ListTransactionsRequest(), metadata=bob.auth)
    assert list(listed.transactions) == []

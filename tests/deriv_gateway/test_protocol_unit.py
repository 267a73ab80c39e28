"""The sans-I/O core, limiter, message helpers, error mapping and log redaction: no sockets."""

from __future__ import annotations

import json

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from deriv_gateway import logs
from deriv_gateway.grpc_errors import to_status
from deriv_gateway.protocol import errors
from deriv_gateway.protocol.core import (
    ProtocolCore,
    ProtocolError,
    Reply,
    StreamMessage,
    Unsolicited,
    echo_matches,
)
from deriv_gateway.protocol.messages import (
    find_in_statement,
    from_wire_amount,
    reference,
    to_wire_amount,
    transfer_fields,
)
from deriv_gateway.protocol.ratelimit import CallLimits, RateLimiter, SlidingWindowLimiter

pytestmark = pytest.mark.unit


def reply(req_id: int, call: str, body: object = 1, **extra: object) -> str:
    return json.dumps(
        {"echo_req": {call: 1, "req_id": req_id}, "msg_type": call, call: body, "req_id": req_id, **extra}
    )


def test_encode_allocates_increasing_req_ids_and_serializes_the_call() -> None:
    core = ProtocolCore()
    a = core.encode("ping")
    b = core.encode("paymentagent_transfer", {"amount": 10.5, "currency": "USD", "transfer_to": "CR1"})
    assert (a.req_id, b.req_id) == (1, 2)
    assert json.loads(b.text) == {
        "paymentagent_transfer": 1,
        "amount": 10.5,
        "currency": "USD",
        "transfer_to": "CR1",
        "req_id": 2,
    }
    assert core.in_flight == 2
    with pytest.raises(ValueError):
        core.encode("ping", {"req_id": 9})


def test_replies_correlate_out_of_order() -> None:
    core = ProtocolCore()
    first, second = core.encode("ping"), core.encode("time")
    event = core.receive(reply(second.req_id, "time", 1700000000))
    assert isinstance(event, Reply) and event.call == "time" and event.ok
    event = core.receive(reply(first.req_id, "ping", "pong"))
    assert isinstance(event, Reply) and event.message["ping"] == "pong"
    assert core.in_flight == 0
    # a late duplicate of an answered request is not mistaken for anything
    assert isinstance(core.receive(reply(first.req_id, "ping", "pong")), Unsolicited)


def test_error_replies_decode_into_typed_errors() -> None:
    core = ProtocolCore()
    out = core.encode("paymentagent_transfer", {"amount": 1, "currency": "USD", "transfer_to": "CR1"})
    frame = {
        "echo_req": out.payload,
        "msg_type": "paymentagent_transfer",
        "req_id": out.req_id,
        "error": {"code": "PaymentAgentTransferError", "message": "Your account balance is insufficient"},
    }
    event = core.receive(json.dumps(frame))
    assert isinstance(event, Reply)
    assert isinstance(event.error, errors.PaymentAgentTransferError)
    with pytest.raises(errors.PaymentAgentTransferError):
        event.result()
    for code, cls in [
        ("RateLimit", errors.RateLimit),
        ("Timeout", errors.ServerTimeout),
        ("InputValidationFailed", errors.InputValidationFailed),
        ("InvalidToken", errors.InvalidToken),
        ("PermissionDenied", errors.PermissionDenied),
        ("Whatever", errors.DerivError),
    ]:
        err = errors.decode_error(
            {"msg_type": "x", "error": {"code": code, "message": "m", "details": {"a": "b"}}}
        )
        assert type(err) is cls and err.code == code and err.details == {"a": "b"}
    assert issubclass(errors.RateLimit, errors.NotExecuted)
    assert issubclass(errors.ServerTimeout, errors.OutcomeUnknown)
    assert issubclass(errors.ConnectionLost, errors.OutcomeUnknown)


def test_an_answer_naming_another_request_is_foreign_whatever_it_says() -> None:
    core = ProtocolCore()
    fields = {"amount": 10, "currency": "USD", "transfer_to": "CR1", "description": "PenPay a-1"}
    ours = core.encode("paymentagent_transfer", fields)

    def answer(echo: object, **body: object) -> dict[str, object]:
        return {"echo_req": echo, "msg_type": "paymentagent_transfer", "req_id": ours.req_id, **body}

    # our echo, the amount as another JSON number, a field Deriv redacts: ours
    assert echo_matches(ours.payload, {**ours.payload, "amount": 10.0, "transfer_to": "<not shown>"})
    others: list[object] = [
        {**ours.payload, "description": "PenPay b-2"},  # another operation's reference
        {**ours.payload, "req_id": ours.req_id + 1},  # another request's echo
        {**ours.payload, "dry_run": 1},  # another request with one more field
        {k: v for k, v in ours.payload.items() if k != "description"},
        {**ours.payload, "amount": 10.01},
        None,  # no echo at all: nothing shows it is ours
    ]
    for echo in others:
        assert not echo_matches(ours.payload, echo)
    # success or refusal about another request: neither counts, it is an unknown outcome
    for body in (
        {"paymentagent_transfer": 1, "transaction_id": 9},
        {"error": {"code": "RateLimit", "message": "m"}},
    ):
        again = core.encode("paymentagent_transfer", fields)
        event = core.receive(
            json.dumps(
                answer({**again.payload, "description": "PenPay b-2"}, **body) | {"req_id": again.req_id}
            )
        )
        assert isinstance(event, Reply) and isinstance(event.error, errors.ForeignAnswer)
        assert isinstance(event.error, errors.OutcomeUnknown)
    event = core.receive(json.dumps(answer(ours.payload, paymentagent_transfer=1, transaction_id=9)))
    assert isinstance(event, Reply) and event.ok
    # calls that name no operation are not compared (a balance is about the account)
    balance = core.encode("balance")
    answered = core.receive(json.dumps({"echo_req": {}, "msg_type": "balance", "req_id": balance.req_id}))
    assert isinstance(answered, Reply) and answered.ok


def test_top_level_error_reply_with_msg_type_error_resolves_the_request() -> None:
    core = ProtocolCore()
    out = core.encode("balance")
    event = core.receive(
        json.dumps(
            {
                "echo_req": {},
                "msg_type": "error",
                "req_id": out.req_id,
                "error": {"code": "Timeout", "message": "Timeout"},
            }
        )
    )
    assert isinstance(event, Reply) and isinstance(event.error, errors.ServerTimeout)


def test_stream_messages_route_by_the_subscribing_req_id() -> None:
    core = ProtocolCore()
    sub = core.encode("balance", {"subscribe": 1})
    first = core.receive(
        reply(
            sub.req_id,
            "balance",
            {"balance": 10, "currency": "USD", "loginid": "CR1", "id": "s" * 32},
            subscription={"id": "s" * 32},
        )
    )
    assert isinstance(first, Reply)
    update = core.receive(
        reply(
            sub.req_id,
            "balance",
            {"balance": 9, "currency": "USD", "loginid": "CR1"},
            subscription={"id": "s" * 32},
        )
    )
    assert isinstance(update, StreamMessage) and update.subscription_id == "s" * 32
    assert core.subscription_id(sub.req_id) == "s" * 32
    pending, streams = core.connection_lost()
    assert pending == [] and streams == [sub.req_id]
    assert isinstance(core.receive(reply(sub.req_id, "balance", {})), Unsolicited)


def test_mismatched_msg_type_and_bad_frames() -> None:
    core = ProtocolCore()
    out = core.encode("ping")
    event = core.receive(reply(out.req_id, "time", 1))
    assert isinstance(event, Reply) and isinstance(event.error, errors.UnexpectedReply)
    with pytest.raises(ProtocolError):
        core.receive("{not json")
    with pytest.raises(ProtocolError):
        core.receive("[1, 2]")
    assert isinstance(core.receive('{"msg_type": "ping"}'), Unsolicited)


def test_connection_lost_reports_in_flight_requests_and_cancel_forgets() -> None:
    core = ProtocolCore()
    a, b, c = core.encode("ping"), core.encode("ping"), core.encode("ping")
    core.cancel(b.req_id)
    pending, _ = core.connection_lost()
    assert sorted(pending) == [a.req_id, c.req_id]
    assert core.in_flight == 0


def test_sliding_window_spaces_calls_instead_of_exceeding() -> None:
    limiter = SlidingWindowLimiter([(60.0, 3)])
    assert [limiter.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.reserve(1.0) == pytest.approx(59.0)
    assert limiter.reserve(61.0) == pytest.approx(0.0)


def test_limits_sized_from_website_status() -> None:
    status = {
        "api_call_limits": {
            "max_proposal_subscription": {"applies_to": "x", "max": 5},
            "max_requestes_general": {"applies_to": "x", "hourly": 14400, "minutely": 180},
            "max_requests_outcome": {"applies_to": "x", "hourly": 1500, "minutely": 25},
            "max_requests_pricing": {"applies_to": "x", "hourly": 3600, "minutely": 80},
        }
    }
    limits = CallLimits.from_website_status(status, safety=0.9)
    assert (limits.general_minutely, limits.general_hourly, limits.outcome_minutely) == (162, 12960, 22)
    limiter = RateLimiter(CallLimits(general_minutely=2, outcome_minutely=1))
    assert limiter.reserve("ping", 0) == 0 and limiter.reserve("ping", 0) == 0  # not counted
    assert limiter.reserve("statement", 0) == 0
    assert limiter.reserve("statement", 0) == pytest.approx(60.0)  # outcome bucket
    assert limiter.reserve("balance", 0) == pytest.approx(60.0)  # general bucket full


def test_a_call_refused_for_waiting_too_long_holds_no_slot() -> None:
    limiter = RateLimiter(CallLimits(general_minutely=2))
    assert limiter.reserve("balance", 0, max_delay=5) == 0
    assert limiter.reserve("balance", 0, max_delay=5) == 0
    # A burst of refusals (each would wait 60 s > 5 s) must not push the next free slot out.
    for _ in range(50):
        assert limiter.reserve("balance", 1, max_delay=5) == pytest.approx(59.0)
    assert limiter.reserve("balance", 60, max_delay=5) == pytest.approx(0.0)


def test_amounts_and_references() -> None:
    assert to_wire_amount(1050) == 10.5 and to_wire_amount(1000) == 10 and to_wire_amount(1) == 0.01
    assert from_wire_amount("4998.95") == 499895 and from_wire_amount(10.1) == 1010
    with pytest.raises(ValueError):
        to_wire_amount(0)
    assert reference("0b8f-Aa") == "PenPay 0b8f-Aa"
    with pytest.raises(ValueError):
        reference("bad id!")
    with pytest.raises(ValueError):  # "$" alone would let a final newline through
        reference("0b8f-Aa\n")
    assert transfer_fields("CR1", 1234, "USD", "PenPay x", 2)["amount"] == 12.34


def test_statement_search_matches_the_whole_reference() -> None:
    statement = {
        "statement": {
            "count": 2,
            "transactions": [
                {"transaction_id": 5, "amount": -10, "longcode": "Transfer ... Agent note: PenPay abc-12"},
                {"transaction_id": 6, "amount": -20.5, "longcode": "Transfer ... Agent note: PenPay abc-1"},
            ],
        }
    }
    match = find_in_statement(statement, "PenPay abc-1")
    assert match is not None and match.transaction_id == 6 and match.amount_cents == 2050
    assert find_in_statement(statement, "PenPay abc") is None


def _details(blob: bytes) -> tuple[status_pb2.Status, list[object]]:
    status = status_pb2.Status.FromString(blob)
    out: list[object] = []
    for any_ in status.details:
        for cls in (error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo, error_details_pb2.BadRequest):
            if any_.Is(cls.DESCRIPTOR):
                msg = cls()
                any_.Unpack(msg)
                out.append(msg)
    return status, out


def test_grpc_status_mapping_with_rich_details() -> None:
    code, _, blob = to_status(errors.RateLimit("You have reached the rate limit for paymentagent_transfer."))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    status, details = _details(blob)
    assert status.code == 8
    assert isinstance(details[0], error_details_pb2.ErrorInfo) and details[0].reason == "RateLimit"
    assert details[0].domain == "deriv.com"
    assert isinstance(details[1], error_details_pb2.RetryInfo)

    code, _, blob = to_status(
        errors.InputValidationFailed("Input validation failed: amount", details={"amount": "Invalid"})
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    _, details = _details(blob)
    assert details[1].field_violations[0].field == "amount"  # type: ignore[attr-defined]

    assert to_status(errors.ServerTimeout("Timeout"))[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    assert to_status(errors.ConnectionLost("x"))[0] == grpc.StatusCode.UNAVAILABLE
    assert to_status(errors.NotLeader("x"))[0] == grpc.StatusCode.UNAVAILABLE
    assert to_status(errors.PermissionDenied("x"))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert to_status(errors.PaymentAgentTransferError("x"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert to_status(errors.InvalidToken("x", msg_type="authorize"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert to_status(errors.InvalidToken("x", msg_type="paymentagent_withdraw"))[0] == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    assert to_status(RuntimeError("boom"))[:2] == (grpc.StatusCode.INTERNAL, "internal error")


def test_redaction_masks_sensitive_keys_and_registered_secrets() -> None:
    logs.register_secret("a1-super-secret-token")
    event = {
        "event": "x",
        "client_token": "abc",
        "frame": {"authorize": "zzz", "amount": 1},
        "note": "sent a1-super-secret-token to deriv",
        "fence": 3,
    }
    out = logs.redact_processor(None, "info", dict(event))
    assert out["client_token"] == logs.MASK
    assert out["frame"] == {"authorize": logs.MASK, "amount": 1}
    assert "a1-super-secret-token" not in out["note"]
    assert out["fence"] == 3


def test_a_line_below_the_level_is_not_written_and_a_capture_still_sees_it() -> None:
    """Loggers skip a line the level drops before scrubbing it (once per transfer: bench/README.md);
    under a pipeline that is not configure_logging's (a test capturing events) every line counts."""
    import io
    import logging

    import structlog

    stream, root = io.StringIO(), logging.getLogger()
    level = root.level
    logs.configure("WARNING", stream)
    try:
        log = logs.get_logger("deriv_gateway.test_levels")
        logs.register_secret("b2-another-secret-token")
        log.info("gateway.sent", note="b2-another-secret-token")
        log.warning("gateway.kept", note="b2-another-secret-token")
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1 and "gateway.kept" in lines[0]
        assert "b2-another-secret-token" not in lines[0]
        with structlog.testing.capture_logs() as events:
            log.info("gateway.sent", operation_id="op-1")
        assert [e["event"] for e in events] == ["gateway.sent"]
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "penpay-json"]:
            root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()

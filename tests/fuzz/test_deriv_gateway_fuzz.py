"""Hypothesis against the Deriv gateway's gRPC API, over TCP, with the real Deriv simulator behind it.

- Invalid money requests (Transfer, Withdraw, with or without resolve_only: bad ids, loginids, amounts,
  currencies, codes, tokens; overlong, unicode, trailing newlines) are INVALID_ARGUMENT and go nowhere:
  no money frame leaves, no journal row is written, the simulator's books do not move.
- Well-formed requests Deriv refuses (unknown loginid, amount outside the agent's limits, a wrong code,
  an unknown token) reach Deriv, are refused, and leave only FAILED / NOT_SENT journal rows; no money.
- Client-token calls (Authorize, GetSettings, RequestWithdrawalCode) with hostile tokens and amounts.
- Random bytes as the request of every method, WatchBalance included.
Always: no INTERNAL or UNKNOWN status, every frame sent conforms to Deriv's schemas (checked at teardown),
no token in any log line, and the gateway still serves (health SERVING, a valid transfer executes once).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deriv_gateway import journal as jn
from deriv_gateway.server import SERVICE_NAME
from deriv_gateway.simulator import DEFAULT_AGENT_TOKEN, DEFAULT_CLIENTS
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from tests.deriv_gateway.conftest import FrameLog, Sim
from tests.fuzz.conftest import TRIED, Bridge, fuzz, fuzz_settings
from tests.fuzz.gateway_harness import (
    CLIENT,
    FAKE_CODE,
    NEVER,
    TOKEN,
    Gateway,
    books,
    money_frames,
    usd,
)

pytestmark = [pytest.mark.integration, pytest.mark.property]

# --- what "invalid" means -----------------------------------------------------------------------

INT64 = (-(2**63), 2**63 - 1)
MAX_AMOUNT = 10**15 - 1  # the gateway's ceiling: larger amounts are not exact as a JSON number
ID = re.compile(r"[0-9A-Za-z-]{1,64}")
text = st.text(max_size=80)
ascii_id = st.from_regex(r"[0-9A-Za-z-]{1,60}", fullmatch=True)

bad_operation_ids = st.one_of(
    st.just(""),
    st.text(alphabet="abc-123", min_size=65, max_size=120),
    text.filter(lambda s: not ID.fullmatch(s)),
    ascii_id.map(lambda s: s + "\n"),  # `$` in a pattern matches before a final newline
    st.sampled_from(["~fence", "abc def", "abc_def", "PenPay 1", "\uff41\uff42\uff43", "١٢٣"]),
)
bad_loginids = st.one_of(
    st.just(""),
    text.filter(lambda s: not re.fullmatch(r"[A-Za-z]+[0-9]+", s)),
    st.just(CLIENT + "\n"),
    st.integers(31, 60).map(lambda n: "CR" + "9" * n),  # the pattern, but longer than any loginid
    st.sampled_from(["ÇR90000001", "CR\uff19\uff10\uff10\uff10", "90000001CR", "CR 90000001", "CR-1", "CR"]),
)
bad_cents = st.one_of(st.integers(INT64[0], 0), st.integers(MAX_AMOUNT + 1, INT64[1]))
bad_currencies = st.one_of(
    st.just(""),
    st.sampled_from(
        ["usd", "Usd", "US", "USDT", "EUR", "KES", "\uff35\uff33\uff24", "USD\n", " USD", "U$D", "BTC"]
    ),
    text.filter(lambda s: s != "USD"),
)
bad_codes = st.one_of(
    text.filter(lambda s: s != "" and not re.fullmatch(r"[A-Za-z0-9_]{8,128}", s)),
    st.just(FAKE_CODE + "\n"),
    st.just("x" * 129),
)
bad_tokens = st.one_of(
    text.filter(lambda s: s != "" and not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", s)),
    st.just(TOKEN + "\n"),
    st.just("t" * 129),
    st.sampled_from([TOKEN + " ", "tøken", "tok\x00en"]),
)


@st.composite
def invalid_transfers(draw: st.DrawFn) -> pb.TransferRequest:
    # the drawn spoilers are values of any type (wrong ones on purpose)
    fields: dict[str, Any] = {
        "transfer_id": str(uuid.uuid4()),
        "client_loginid": CLIENT,
        "cents": 1250,
        "currency": "USD",
    }
    broken = draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=4, unique=True))
    spoilers = {
        "transfer_id": bad_operation_ids,
        "client_loginid": bad_loginids,
        "cents": bad_cents,
        "currency": bad_currencies,
    }
    for name in broken:
        fields[name] = draw(spoilers[name])
    return pb.TransferRequest(
        transfer_id=fields["transfer_id"],
        client_loginid=fields["client_loginid"],
        amount=usd(fields["cents"], fields["currency"]),
        resolve_only=draw(st.booleans()),
    )


@st.composite
def invalid_withdrawals(draw: st.DrawFn) -> pb.WithdrawRequest:
    fields: dict[str, Any] = {
        "withdrawal_id": str(uuid.uuid4()),
        "client_token": TOKEN,
        "verification_code": FAKE_CODE,
        "cents": 1250,
        "currency": "USD",
    }
    spoilers = {
        "withdrawal_id": bad_operation_ids,
        "client_token": bad_tokens,
        "verification_code": bad_codes,
        "cents": bad_cents,
        "currency": bad_currencies,
    }
    broken = draw(st.lists(st.sampled_from(sorted(spoilers)), min_size=1, max_size=3, unique=True))
    for name in broken:
        fields[name] = draw(spoilers[name])
    # resolve_only ignores the code: a broken code is only a defect when the withdrawal would be sent
    resolve_only = broken != ["verification_code"] and draw(st.booleans())
    return pb.WithdrawRequest(
        withdrawal_id=fields["withdrawal_id"],
        client_token=fields["client_token"],
        verification_code=fields["verification_code"],
        amount=usd(fields["cents"], fields["currency"]),
        resolve_only=resolve_only,
    )


async def test_invalid_money_requests_never_reach_deriv(
    gw: Gateway, sim: Sim, frames: FrameLog, bridge: Bridge
) -> None:
    before = await books(sim)
    target = "gateway Transfer/Withdraw (invalid)"

    async def one(method: str, request: Any) -> None:
        gw.tokens_seen.add(getattr(request, "client_token", ""))
        sent_before = len(money_frames(frames))
        code = await gw.call(method, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{method} -> {code.name}: {request!r}"
        assert len(money_frames(frames)) == sent_before, f"{method} sent a money frame: {request!r}"
        assert await gw.journal_rows() == [], f"{method} wrote a journal row: {request!r}"

    @fuzz_settings()
    @given(
        call=st.tuples(st.just("Transfer"), invalid_transfers())
        | st.tuples(st.just("Withdraw"), invalid_withdrawals())
    )
    def example(call: tuple[str, Any]) -> None:
        TRIED[target] += 1
        bridge(one(*call))

    await fuzz(target, example)
    assert await books(sim) == before, "the simulator's books moved"


# --- well-formed, refused by Deriv ---------------------------------------------------------------

REFUSED_OK = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
}
unknown_loginids = st.from_regex(r"(CR|MF|VRTC)[0-9]{5,12}", fullmatch=True).filter(
    lambda s: s not in DEFAULT_CLIENTS and s != "CR90000000"
)
outside_limits = st.one_of(st.integers(1, 999), st.integers(200_001, MAX_AMOUNT))  # limits: 10..2000 USD
unknown_tokens = st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True).filter(
    lambda s: s not in DEFAULT_CLIENTS.values() and s != DEFAULT_AGENT_TOKEN
)
wrong_codes = st.from_regex(r"[A-Za-z0-9_]{8,40}", fullmatch=True)


@st.composite
def refused_money_requests(draw: st.DrawFn) -> tuple[str, Any]:
    ident = str(uuid.uuid4())
    how = draw(st.sampled_from(["unknown loginid", "outside limits", "wrong code", "unknown token"]))
    if how == "unknown loginid":
        request = pb.TransferRequest(
            transfer_id=ident, client_loginid=draw(unknown_loginids), amount=usd(1250)
        )
        return "Transfer", request
    if how == "outside limits":
        request = pb.TransferRequest(
            transfer_id=ident, client_loginid=CLIENT, amount=usd(draw(outside_limits))
        )
        return "Transfer", request
    token = TOKEN if how == "wrong code" else draw(unknown_tokens)
    request = pb.WithdrawRequest(
        withdrawal_id=ident, client_token=token, verification_code=draw(wrong_codes), amount=usd(1250)
    )
    return "Withdraw", request


async def test_requests_deriv_refuses_move_no_money(gw: Gateway, sim: Sim, bridge: Bridge) -> None:
    before = await books(sim)
    target = "gateway Transfer/Withdraw (well-formed, refused by Deriv)"

    async def one(method: str, request: Any) -> None:
        gw.tokens_seen.add(getattr(request, "client_token", ""))
        code = await gw.call(method, request)
        assert code in REFUSED_OK, f"{method} -> {code.name}: {request!r}"
        statuses = {row.status for row in await gw.journal_rows()}
        assert statuses <= {jn.FAILED, jn.NOT_SENT}, f"journal {statuses} after {request!r}"

    @fuzz_settings()
    @given(call=refused_money_requests())
    def example(call: tuple[str, Any]) -> None:
        TRIED[target] += 1
        bridge(one(*call))

    await fuzz(target, example)
    assert await books(sim) == before, "the simulator's books moved"


# --- client-token calls ----------------------------------------------------------------------------

any_token = st.one_of(st.just(TOKEN), unknown_tokens, bad_tokens, st.just(""))
display_amounts = st.one_of(
    st.none(),
    st.just(usd(1250)),
    st.builds(usd, st.integers(*INT64), st.one_of(st.just("USD"), bad_currencies)),
)


def format_ok(token: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9_-]{1,128}", token) is not None


def bad_display_amount(request: Any) -> bool:
    if not isinstance(request, pb.RequestWithdrawalCodeRequest) or not request.HasField("amount"):
        return False
    amount = request.amount
    return not 0 < amount.amount_cents <= MAX_AMOUNT or amount.currency != "USD"


@st.composite
def client_token_calls(draw: st.DrawFn) -> tuple[str, Any]:
    token = draw(any_token)
    method = draw(st.sampled_from(["Authorize", "GetSettings", "RequestWithdrawalCode"]))
    if method == "Authorize":
        return method, pb.AuthorizeRequest(client_token=token)
    if method == "GetSettings":
        return method, pb.GetSettingsRequest(client_token=token)
    amount = draw(display_amounts)
    return method, pb.RequestWithdrawalCodeRequest(client_token=token, amount=amount)


async def test_client_token_calls_with_hostile_input(
    gw: Gateway, sim: Sim, frames: FrameLog, bridge: Bridge
) -> None:
    before = await books(sim)
    target = "gateway Authorize/GetSettings/RequestWithdrawalCode"

    async def one(method: str, request: Any) -> None:
        gw.tokens_seen.add(request.client_token)
        sent_before = len(frames.frames)
        code = await gw.call(method, request)
        assert code not in NEVER, f"{method} -> {code.name}: {request!r}"
        if not format_ok(request.client_token) or bad_display_amount(request):
            assert code == grpc.StatusCode.INVALID_ARGUMENT, f"{method} -> {code.name}: {request!r}"
            sent = [f for d, f in frames.frames[sent_before:] if d == "send" and "authorize" in f]
            assert not [f for f in sent if f["authorize"] == request.client_token], (
                "a malformed token was sent"
            )

    @fuzz_settings()
    @given(call=client_token_calls())
    def example(call: tuple[str, Any]) -> None:
        TRIED[target] += 1
        bridge(one(*call))

    await fuzz(target, example)
    assert await books(sim) == before
    assert await gw.journal_rows() == []


# --- random bytes ----------------------------------------------------------------------------------

METHODS = ("Transfer", "RequestWithdrawalCode", "Withdraw", "GetBalance", "GetSettings", "Authorize")


async def test_random_bytes_at_every_method(gw: Gateway, sim: Sim, frames: FrameLog, bridge: Bridge) -> None:
    before = await books(sim)
    target = "gateway gRPC methods (random request bytes)"
    base = f"/{SERVICE_NAME}/"

    async def one(method: str, raw: bytes) -> None:
        sent_before = len(money_frames(frames))
        try:
            if method == "WatchBalance":
                stream = gw.channel.unary_stream(base + method)(raw, timeout=10)
                async with asyncio.timeout(5):
                    async for _ in stream:
                        break  # the current balance arrives first: enough, it serves
                stream.cancel()
            else:
                await gw.channel.unary_unary(base + method)(raw, timeout=20)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() not in NEVER, f"{method} -> {exc.code().name} ({exc.details()}): {raw[:80]!r}"
        assert len(money_frames(frames)) == sent_before, f"{method} sent a money frame: {raw[:80]!r}"

    @fuzz_settings()
    @given(method=st.sampled_from((*METHODS, "WatchBalance")), raw=st.binary(max_size=400))
    def example(method: str, raw: bytes) -> None:
        TRIED[target] += 1
        bridge(one(method, raw))

    await fuzz(target, example)
    assert await books(sim) == before
    assert await gw.journal_rows() == []

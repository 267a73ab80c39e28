"""The idempotency contract of the money RPCs.

On InitiateDeposit with the real DepositOrchestrator (a verified user with a bound Deriv account
through the real gateway): key required, byte-identical replay, mismatch, scope per user, only the
hash stored, one transaction per key even after the 24 h window. Errors of the real money RPCs: a
refusal before the Transaction was written leaves the key free; one after it (InitiateWithdrawal
refused by Deriv) or from ConfirmWithdrawal is stored and replayed.
On a test-only money RPC registered through the same interceptor (it is generic), where the
test controls the servicer: in flight, retryable failures not stored, expiry after 24 h.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import pytest
from sqlalchemy import event, select

from application.payments.errors import PaymentRefused, ServiceUnavailable
from domain.payments.idempotency import IdempotencyKey
from penpay.auth.v1 import auth_pb2
from penpay.payments.v1 import payments_pb2
from penpay_api.context import current_call
from persistence.tables import audit_logs, domain_events, idempotency_keys, transactions

from .conftest import CLIENT_TOKEN, Account, Gateway, Harness, StartApi, details_of, trailer

pytestmark = pytest.mark.integration

DEPOSIT = "/penpay.payments.v1.PaymentsService/InitiateDeposit"
WITHDRAWAL = "/penpay.payments.v1.PaymentsService/InitiateWithdrawal"
CONFIRM = "/penpay.payments.v1.PaymentsService/ConfirmWithdrawal"
TEST_METHOD = "/penpay.test.v1.MoneyTestService/Move"
DAY = timedelta(hours=24)


def deposit(amount_cents: int = 1_300_00, currency: str = "KES") -> payments_pb2.InitiateDepositRequest:
    return payments_pb2.InitiateDepositRequest(amount_cents=amount_cents, currency=currency)


def withdrawal(amount_cents: int = 15_00) -> payments_pb2.InitiateWithdrawalRequest:
    return payments_pb2.InitiateWithdrawalRequest(amount_cents=amount_cents, currency="USD")


async def raw_call(
    api: Harness, method: str, request: Any, account: Account, key: str | None
) -> tuple[bytes, list[tuple[str, Any]]]:
    """The response bytes exactly as they came over the wire, and the trailing metadata."""
    call_type = api.channel.unary_unary(method, request_serializer=type(request).SerializeToString)
    metadata = [*account.auth, *([("idempotency-key", key)] if key is not None else [])]
    call = call_type(request, metadata=metadata)
    body = await call
    return body, list(await call.trailing_metadata())


async def failing_call(
    api: Harness, method: str, request: Any, account: Account, key: str | None
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await raw_call(api, method, request, account, key)
    return failed.value


# --- InitiateDeposit, the real application ------------------------------------------------


@pytest.fixture
async def payer(start_api: StartApi, gateway: Gateway) -> tuple[Harness, Account]:
    api = await start_api(gateway=gateway)
    account = await api.verified_account()
    await api.auth.BindDerivAccount(
        auth_pb2.BindDerivAccountRequest(deriv_token=CLIENT_TOKEN), metadata=account.auth
    )
    return api, account


async def count_transactions(api: Harness) -> int:
    async with api.core.engine.connect() as connection:
        return len((await connection.execute(select(transactions.c.id))).all())


async def test_a_money_call_without_a_key_is_refused(payer: tuple[Harness, Account]) -> None:
    api, account = payer
    error = await failing_call(api, DEPOSIT, deposit(), account, None)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    parsed = details_of(error)
    assert parsed.error_info.reason == "IDEMPOTENCY_KEY_REQUIRED"
    assert [v.field for v in parsed.violations] == ["idempotency_key"]
    bad = await failing_call(api, DEPOSIT, deposit(), account, "k" * 256)  # too long
    assert [v.field for v in details_of(bad).violations] == ["idempotency_key"]
    assert await count_transactions(api) == 0


async def test_a_repeat_replays_the_first_response_byte_for_byte(payer: tuple[Harness, Account]) -> None:
    api, account = payer
    key = f"deposit-{secrets.token_hex(8)}"
    first, first_trailers = await raw_call(api, DEPOSIT, deposit(), account, key)
    second, second_trailers = await raw_call(api, DEPOSIT, deposit(), account, key)

    assert second == first
    response = payments_pb2.InitiateDepositResponse.FromString(first)
    assert response.transaction.amount.amount_cents == 1_300_00
    assert response.transaction.status == "pending"
    assert dict(first_trailers).get("idempotent-replayed") is None
    assert dict(second_trailers).get("idempotent-replayed") == "true"
    assert await count_transactions(api) == 1

    # Only the key's hash is kept, anywhere.
    expected = IdempotencyKey.create(key, scope=account.user_id, operation=DEPOSIT).hash_hex
    async with api.core.engine.connect() as connection:
        stored = (await connection.execute(select(idempotency_keys))).one()
        tx_hash = (await connection.execute(select(transactions.c.idempotency_key_hash))).scalar_one()
        texts = [
            str(row)
            for table in (idempotency_keys, transactions, domain_events, audit_logs)
            for row in (await connection.execute(select(table))).all()
        ]
    assert stored.key_hash == expected == tx_hash
    # The fingerprint is keyed: a plain hash of the request (phone number included) is not stored.
    assert (
        stored.request_fingerprint
        != hashlib.sha256(deposit().SerializeToString(deterministic=True)).hexdigest()
    )
    assert stored.request_fingerprint == api.api.server.idempotency.fingerprint(deposit())
    assert stored.status == "COMPLETED" and stored.response_body == first and stored.response_code == 0
    assert str(stored.transaction_id) == response.transaction.transaction_id
    assert not any(key in text for text in texts)


async def test_two_new_requests_racing_under_one_key_get_one_answer(payer: tuple[Harness, Account]) -> None:
    """Nothing is claimed before the use case runs: the unique key hash lets one request store its
    Transaction and answer; the other answers with that stored answer, whichever way they overlap."""
    api, account = payer
    key = f"deposit-{secrets.token_hex(8)}"
    (one, _), (two, _) = await asyncio.gather(
        raw_call(api, DEPOSIT, deposit(), account, key), raw_call(api, DEPOSIT, deposit(), account, key)
    )
    assert one == two
    assert await count_transactions(api) == 1


async def test_the_answer_commits_with_the_transaction(payer: tuple[Harness, Account]) -> None:
    """The Transaction, its outbox event and the key's answer are one database transaction: no
    commit holds one without the other, so a crash between them cannot split them (and no claim
    is left to release)."""
    api, account = payer
    committed: list[list[str]] = []
    open_: dict[int, list[str]] = {}

    def statement(conn: Any, _cursor: Any, text: str, *_: Any) -> None:
        open_.setdefault(id(conn), []).append(text.split("(")[0].strip().upper())

    def commit(conn: Any) -> None:
        committed.append(open_.pop(id(conn), []))

    def rollback(conn: Any) -> None:
        open_.pop(id(conn), None)

    sync = api.core.engine.sync_engine
    listeners = (("before_cursor_execute", statement), ("commit", commit), ("rollback", rollback))
    for name, fn in listeners:
        event.listen(sync, name, fn)
    try:
        await raw_call(api, DEPOSIT, deposit(), account, f"deposit-{secrets.token_hex(8)}")
    finally:
        for name, fn in listeners:
            event.remove(sync, name, fn)
    writes = [c for c in committed if any("IDEMPOTENCY_KEYS" in s or "INTO TRANSACTIONS" in s for s in c)]
    assert len(writes) == 1, committed
    assert {"INSERT INTO TRANSACTIONS", "INSERT INTO IDEMPOTENCY_KEYS", "INSERT INTO DOMAIN_EVENTS"} <= set(
        writes[0]
    )


async def test_an_ended_session_moves_no_money(payer: tuple[Harness, Account]) -> None:
    """InitiateDeposit checks the session in its one read, not in the interceptor: logged out,
    the call is refused as before and nothing is written, not even the key."""
    api, account = payer
    await api.auth.Logout(auth_pb2.LogoutRequest(refresh_token=account.refresh_token), metadata=account.auth)
    error = await failing_call(api, DEPOSIT, deposit(), account, f"deposit-{secrets.token_hex(8)}")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(error).error_info.reason == "SESSION_ENDED"
    assert await count_transactions(api) == 0
    async with api.core.engine.connect() as connection:
        assert (await connection.execute(select(idempotency_keys))).all() == []


async def test_the_same_key_for_another_request_is_refused(payer: tuple[Harness, Account]) -> None:
    api, account = payer
    key = f"deposit-{secrets.token_hex(8)}"
    await raw_call(api, DEPOSIT, deposit(1_300_00), account, key)
    error = await failing_call(api, DEPOSIT, deposit(2_000_00), account, key)

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    parsed = details_of(error)
    assert parsed.error_info.reason == "IDEMPOTENCY_KEY_REUSED" and parsed.error_info.domain == "penpay.io"
    assert trailer(error, "x-http-code") == "422"
    assert await count_transactions(api) == 1


def status_details(error: grpc.aio.AioRpcError) -> bytes:
    """The error's details (google.rpc.Status) as they came over the wire."""
    details: bytes = dict(error.trailing_metadata() or ())["grpc-status-details-bin"]
    return details


async def count_stored_answers(api: Harness) -> int:
    async with api.core.engine.connect() as connection:
        return len((await connection.execute(select(idempotency_keys.c.id))).all())


async def test_a_refusal_before_anything_was_written_leaves_the_key_free(
    payer: tuple[Harness, Account],
) -> None:
    api, account = payer
    key = f"deposit-{secrets.token_hex(8)}"
    too_small = deposit(650_00)  # KES 650 = USD 5.00, below what Deriv takes
    first = await failing_call(api, DEPOSIT, too_small, account, key)
    assert first.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(first).error_info.reason == "DERIV_AMOUNT_OUT_OF_RANGE"
    assert await count_transactions(api) == 0 and await count_stored_answers(api) == 0

    # The same request again is judged again (not replayed), and refused the same way.
    again = await failing_call(api, DEPOSIT, too_small, account, key)
    assert again.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert status_details(again) == status_details(first)
    assert trailer(again, "idempotent-replayed") is None and await count_stored_answers(api) == 0

    # The corrected request under the same key starts the deposit.
    body, trailers = await raw_call(api, DEPOSIT, deposit(1_300_00), account, key)
    started = payments_pb2.InitiateDepositResponse.FromString(body).transaction
    assert started.status == "pending" and started.amount.amount_cents == 1_300_00
    assert "idempotent-replayed" not in dict(trailers)
    assert await count_transactions(api) == 1


async def test_a_refusal_after_the_transaction_was_created_is_replayed(
    payer: tuple[Harness, Account], gateway: Gateway
) -> None:
    api, account = payer
    books = gateway.simulator.engine.books  # an empty Deriv account: no code is emailed for it
    books.adjust("CR90000001", -books.accounts["CR90000001"].balance, "emptied by the test", now=0)
    key = f"withdrawal-{secrets.token_hex(8)}"
    first = await failing_call(api, WITHDRAWAL, withdrawal(), account, key)
    assert first.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(first).error_info.reason == "PAYMENT_REFUSED"
    async with api.core.engine.connect() as connection:
        failed = (await connection.execute(select(transactions.c.status))).scalar_one()
    assert failed == "FAILED"

    second = await failing_call(api, WITHDRAWAL, withdrawal(), account, key)
    assert second.code() == first.code() and second.details() == first.details()
    assert status_details(second) == status_details(first)
    assert trailer(first, "idempotent-replayed") is None and trailer(second, "idempotent-replayed") == "true"
    # The key went into that withdrawal: another request under it is a key reused.
    other = await failing_call(api, WITHDRAWAL, withdrawal(20_00), account, key)
    assert details_of(other).error_info.reason == "IDEMPOTENCY_KEY_REUSED"
    assert await count_transactions(api) == 1


async def test_a_rejected_verification_code_is_stored_and_replayed(
    payer: tuple[Harness, Account],
) -> None:
    api, account = payer
    started, _ = await raw_call(api, WITHDRAWAL, withdrawal(), account, f"w-{secrets.token_hex(8)}")
    tx = payments_pb2.InitiateWithdrawalResponse.FromString(started).transaction
    wrong = payments_pb2.ConfirmWithdrawalRequest(
        transaction_id=tx.transaction_id, verification_code="WRONG1"
    )
    key = f"confirm-{secrets.token_hex(8)}"

    # The rejection failed the withdrawal: computed again, the answer would be another one.
    first = await failing_call(api, CONFIRM, wrong, account, key)
    second = await failing_call(api, CONFIRM, wrong, account, key)
    assert first.code() == second.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details_of(first).error_info.reason == "VERIFICATION_CODE_REJECTED"
    assert status_details(second) == status_details(first)
    assert trailer(second, "idempotent-replayed") == "true"


async def test_keys_are_scoped_by_user(start_api: StartApi, gateway: Gateway) -> None:
    api = await start_api(gateway=gateway)
    alice = await api.verified_account()
    await api.auth.BindDerivAccount(
        auth_pb2.BindDerivAccountRequest(deriv_token=CLIENT_TOKEN), metadata=alice.auth
    )
    bob = await api.verified_account()
    await api.auth.BindDerivAccount(
        auth_pb2.BindDerivAccountRequest(deriv_token="sim-client2-token"), metadata=bob.auth
    )
    key = "same-key-for-both"
    a, _ = await raw_call(api, DEPOSIT, deposit(), alice, key)
    b, _ = await raw_call(api, DEPOSIT, deposit(), bob, key)
    ta = payments_pb2.InitiateDepositResponse.FromString(a).transaction
    tb = payments_pb2.InitiateDepositResponse.FromString(b).transaction
    assert ta.transaction_id != tb.transaction_id
    assert (ta.user_id, tb.user_id) == (alice.user_id, bob.user_id)


async def test_after_24_hours_the_key_is_free_but_still_one_transaction(
    payer: tuple[Harness, Account],
) -> None:
    api, account = payer
    key = f"deposit-{secrets.token_hex(8)}"
    first, _ = await raw_call(api, DEPOSIT, deposit(1_300_00), account, key)

    api.clock.advance(DAY - timedelta(seconds=1))
    await api.relogin(account)
    still = await failing_call(api, DEPOSIT, deposit(2_000_00), account, key)
    assert details_of(still).error_info.reason == "IDEMPOTENCY_KEY_REUSED"

    api.clock.advance(timedelta(seconds=2))
    await api.relogin(account)
    later, _ = await raw_call(api, DEPOSIT, deposit(2_000_00), account, key)  # no longer a mismatch
    # ... and the transaction table's unique key hash still gives the first transaction.
    assert (
        payments_pb2.InitiateDepositResponse.FromString(later).transaction.transaction_id
        == payments_pb2.InitiateDepositResponse.FromString(first).transaction.transaction_id
    )
    assert await count_transactions(api) == 1


# --- a test-only money RPC through the same interceptor ------------------------------------


@dataclass
class MoneyDouble:
    """The servicer of penpay.test.v1.MoneyTestService/Move, steered by the test."""

    calls: int = 0
    key_hashes: list[str] = field(default_factory=list)
    hold: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    fail_with: Exception | None = None

    async def move(
        self, request: payments_pb2.InitiateDepositRequest, context: grpc.aio.ServicerContext
    ) -> payments_pb2.InitiateDepositResponse:
        self.calls += 1
        self.key_hashes.append(current_call().idempotency_key_hash or "")
        self.entered.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return payments_pb2.InitiateDepositResponse(
            transaction=payments_pb2.Transaction(
                transaction_id=str(uuid.uuid4()), status=f"call {self.calls}", amount=None
            )
        )

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "penpay.test.v1.MoneyTestService",
            {
                "Move": grpc.unary_unary_rpc_method_handler(
                    self.move,
                    request_deserializer=payments_pb2.InitiateDepositRequest.FromString,
                    response_serializer=payments_pb2.InitiateDepositResponse.SerializeToString,
                )
            },
        )


@pytest.fixture
async def money(start_api: StartApi) -> AsyncIterator[tuple[Harness, Account, MoneyDouble]]:
    double = MoneyDouble()
    api = await start_api(payments=None, extra_handlers=[double.handler()], extra_money_methods={TEST_METHOD})
    yield api, await api.new_account(), double


async def test_a_repeat_while_the_first_is_in_flight_is_aborted(
    money: tuple[Harness, Account, MoneyDouble],
) -> None:
    api, account, double = money
    double.hold = asyncio.Event()
    first = asyncio.create_task(raw_call(api, TEST_METHOD, deposit(), account, "k-in-flight"))
    await asyncio.wait_for(double.entered.wait(), 10)

    error = await failing_call(api, TEST_METHOD, deposit(), account, "k-in-flight")
    assert error.code() == grpc.StatusCode.ABORTED
    parsed = details_of(error)
    assert parsed.error_info.reason == "IDEMPOTENCY_KEY_IN_FLIGHT" and parsed.retry_delay_seconds == 1

    double.hold.set()
    body, _ = await first
    replay, trailers = await raw_call(api, TEST_METHOD, deposit(), account, "k-in-flight")
    assert replay == body and dict(trailers)["idempotent-replayed"] == "true"
    assert double.calls == 1
    expected = IdempotencyKey.create("k-in-flight", scope=account.user_id, operation=TEST_METHOD).hash_hex
    assert double.key_hashes == [expected]


async def test_a_definitive_error_is_stored_and_replayed(money: tuple[Harness, Account, MoneyDouble]) -> None:
    api, account, double = money
    double.fail_with = PaymentRefused("M-Pesa refused the STK push")
    first = await failing_call(api, TEST_METHOD, deposit(), account, "k-refused")
    double.fail_with = None
    second = await failing_call(api, TEST_METHOD, deposit(), account, "k-refused")
    assert first.code() == second.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert details_of(second).error_info.reason == "PAYMENT_REFUSED"
    assert trailer(second, "idempotent-replayed") == "true"
    assert double.calls == 1


async def test_a_retryable_error_is_not_stored(money: tuple[Harness, Account, MoneyDouble]) -> None:
    api, account, double = money
    double.fail_with = ServiceUnavailable("Deriv is not answering")
    first = await failing_call(api, TEST_METHOD, deposit(), account, "k-retry")
    assert first.code() == grpc.StatusCode.UNAVAILABLE
    double.fail_with = None
    body, trailers = await raw_call(api, TEST_METHOD, deposit(), account, "k-retry")  # runs again at once
    assert "idempotent-replayed" not in dict(trailers) and double.calls == 2
    replay, _ = await raw_call(api, TEST_METHOD, deposit(), account, "k-retry")
    assert replay == body and double.calls == 2


async def test_the_stored_response_expires_after_24_hours(
    money: tuple[Harness, Account, MoneyDouble],
) -> None:
    api, account, double = money
    first, _ = await raw_call(api, TEST_METHOD, deposit(), account, "k-expiry")

    api.clock.advance(DAY - timedelta(seconds=1))
    await api.relogin(account)
    replay, _ = await raw_call(api, TEST_METHOD, deposit(), account, "k-expiry")
    assert replay == first and double.calls == 1

    api.clock.advance(timedelta(seconds=2))
    await api.relogin(account)
    fresh, trailers = await raw_call(api, TEST_METHOD, deposit(), account, "k-expiry")
    assert fresh != first and double.calls == 2 and "idempotent-replayed" not in dict(trailers)
    assert payments_pb2.InitiateDepositResponse.FromString(fresh).transaction.status == "call 2"


async def test_an_ended_session_asks_deriv_for_no_withdrawal_code(payer: tuple[Harness, Account]) -> None:
    """InitiateWithdrawal checks the session in its one read too: logged out, refused, and no
    Transaction, no key kept, no code asked for."""
    api, account = payer
    await api.auth.Logout(auth_pb2.LogoutRequest(refresh_token=account.refresh_token), metadata=account.auth)
    error = await failing_call(api, WITHDRAWAL, withdrawal(), account, f"withdrawal-{secrets.token_hex(8)}")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(error).error_info.reason == "SESSION_ENDED"
    assert await count_transactions(api) == 0
    async with api.core.engine.connect() as connection:
        assert (await connection.execute(select(idempotency_keys))).all() == []


async def test_an_ended_session_confirms_no_withdrawal(payer: tuple[Harness, Account]) -> None:
    """ConfirmWithdrawal checks the session in its one read of the user: logged out, refused before
    anything is locked, no debit asked for, and the key kept for no answer."""
    api, account = payer
    started, _ = await raw_call(api, WITHDRAWAL, withdrawal(), account, f"w-{secrets.token_hex(8)}")
    tx = payments_pb2.InitiateWithdrawalResponse.FromString(started).transaction
    await api.auth.Logout(auth_pb2.LogoutRequest(refresh_token=account.refresh_token), metadata=account.auth)
    confirm = payments_pb2.ConfirmWithdrawalRequest(
        transaction_id=tx.transaction_id, verification_code="123456"
    )
    error = await failing_call(api, CONFIRM, confirm, account, f"confirm-{secrets.token_hex(8)}")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details_of(error).error_info.reason == "SESSION_ENDED"
    async with api.core.engine.connect() as connection:
        status = (await connection.execute(select(transactions.c.status))).scalar_one()
        keys = (await connection.execute(select(idempotency_keys.c.scope))).scalars().all()
    assert status == "AWAITING_WITHDRAWAL_CODE"
    assert [scope for scope in keys if scope.endswith("ConfirmWithdrawal")] == []


async def test_a_withdrawal_s_key_is_claimed_with_its_read_and_answered_with_its_answer(
    payer: tuple[Harness, Account], gateway: Gateway
) -> None:
    """InitiateWithdrawal and ConfirmWithdrawal write their key in the database transactions they
    commit anyway. InitiateWithdrawal: the code request moves no money, so nothing is committed
    before it; its Transaction is stored once, with the key's answer (its read ends in a rollback,
    as InitiateDeposit's). ConfirmWithdrawal: the claim with the debit's intent, before Deriv is
    called; the answer with the answer, no unit of work of its own ending in a rollback. A repeat
    of each replays its answer byte for byte."""
    api, account = payer
    committed: list[list[str]] = []
    rolled_back: list[list[str]] = []
    open_: dict[int, list[str]] = {}

    def statement(conn: Any, _cursor: Any, text: str, *_: Any) -> None:
        open_.setdefault(id(conn), []).append(" ".join(text.split()[:3]).upper())

    def commit(conn: Any) -> None:
        committed.append(open_.pop(id(conn), []))

    def rollback(conn: Any) -> None:
        rolled_back.append(open_.pop(id(conn), []))

    sync = api.core.engine.sync_engine
    listeners = (("before_cursor_execute", statement), ("commit", commit), ("rollback", rollback))
    for name, fn in listeners:
        event.listen(sync, name, fn)
    start_key, confirm_key = f"w-{secrets.token_hex(8)}", f"c-{secrets.token_hex(8)}"
    try:
        started, _ = await raw_call(api, WITHDRAWAL, withdrawal(), account, start_key)
        tx = payments_pb2.InitiateWithdrawalResponse.FromString(started).transaction
        mails = [m for m in gateway.simulator.engine.books.mailbox if m.loginid == "CR90000001"]
        confirm = payments_pb2.ConfirmWithdrawalRequest(
            transaction_id=tx.transaction_id, verification_code=str(mails[-1].code)
        )
        confirmed, _ = await raw_call(api, CONFIRM, confirm, account, confirm_key)
    finally:
        for name, fn in listeners:
            event.remove(sync, name, fn)
    keyed = [c for c in committed if any("IDEMPOTENCY_KEYS" in s for s in c)]
    assert len(keyed) == 3, committed  # answer; claim, answer
    start_answer, confirm_claim, confirm_answer = keyed

    def has(statements: list[str], *prefixes: str) -> bool:
        return all(any(s.startswith(p) for s in statements) for p in prefixes)

    assert has(start_answer, "INSERT INTO TRANSACTIONS", "INSERT INTO IDEMPOTENCY_KEYS")
    assert not has(start_answer, "SELECT USERS.ID")  # the read ended before Deriv was asked
    assert has(
        confirm_claim,
        "SELECT USERS.ID",
        "SELECT TRANSACTIONS.ID",
        "UPDATE TRANSACTIONS",
        "INSERT INTO IDEMPOTENCY_KEYS",
    )
    assert has(confirm_answer, "UPDATE TRANSACTIONS", "UPDATE IDEMPOTENCY_KEYS")
    # ConfirmWithdrawal's reads went on in the units of work that commit: only InitiateWithdrawal's
    # one read ended in a rollback
    assert len([r for r in rolled_back if has(r, "SELECT USERS.ID")]) == 1, rolled_back
    assert not any(has(r, "SELECT TRANSACTIONS.ID") for r in rolled_back)
    assert payments_pb2.ConfirmWithdrawalResponse.FromString(confirmed).transaction.status == (
        "mpesa_disbursement_sent"
    )

    again, trailers = await raw_call(api, WITHDRAWAL, withdrawal(), account, start_key)
    assert again == started and dict(trailers).get("idempotent-replayed") == "true"
    again, trailers = await raw_call(api, CONFIRM, confirm, account, confirm_key)
    assert again == confirmed and dict(trailers).get("idempotent-replayed") == "true"

"""penpay.payments.v1.PaymentsService over the real orchestrators, the real Deriv gateway
and the Deriv simulator (the saga's later steps are the payments tests' business)."""

from __future__ import annotations

import secrets

import grpc
import pytest

from application.payments.floats import fund_float
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency, Money
from penpay.auth.v1 import auth_pb2
from penpay.payments.v1 import payments_pb2
from tests.floats import OPENING

from .conftest import CLIENT_TOKEN, Account, Gateway, Harness, StartApi, details_of

pytestmark = pytest.mark.integration


OPENING_USD = OPENING[AccountKind.DERIV_AGENT_FLOAT]


def key() -> tuple[tuple[str, str]]:
    return (("idempotency-key", f"k-{secrets.token_hex(8)}"),)


@pytest.fixture
async def payer(start_api: StartApi, gateway: Gateway) -> tuple[Harness, Account, Gateway]:
    api = await start_api(gateway=gateway)
    account = await api.verified_account()
    await api.auth.BindDerivAccount(
        auth_pb2.BindDerivAccountRequest(deriv_token=CLIENT_TOKEN), metadata=account.auth
    )
    return api, account, gateway


def mailed_code(gateway: Gateway) -> str:
    mails = [m for m in gateway.simulator.engine.books.mailbox if m.loginid == "CR90000001"]
    assert mails, "Deriv sent no verification email"
    return str(mails[-1].code)


async def test_deposit_then_read_it_back(payer: tuple[Harness, Account, Gateway]) -> None:
    api, account, _ = payer
    started = await api.payments.InitiateDeposit(
        payments_pb2.InitiateDepositRequest(amount_cents=1_300_00, currency="KES"),
        metadata=(*account.auth, *key()),
    )
    tx = started.transaction
    assert tx.type == payments_pb2.TRANSACTION_TYPE_DEPOSIT and tx.status == "pending"
    assert (tx.amount.amount_cents, tx.amount.currency) == (1_300_00, "KES")
    assert (tx.converted_amount.amount_cents, tx.converted_amount.currency) == (10_00, "USD")  # 130 KES/USD
    assert tx.deriv_login_id == "CR90000001" and tx.user_id == account.user_id and tx.rate

    got = await api.payments.GetTransaction(
        payments_pb2.GetTransactionRequest(transaction_id=tx.transaction_id), metadata=account.auth
    )
    assert got.transaction == tx
    listed = await api.payments.ListTransactions(
        payments_pb2.ListTransactionsRequest(), metadata=account.auth
    )
    assert [t.transaction_id for t in listed.transactions] == [tx.transaction_id]


async def test_withdrawal_is_quoted_then_confirmed_with_the_emailed_code(
    payer: tuple[Harness, Account, Gateway],
) -> None:
    api, account, gateway = payer
    started = await api.payments.InitiateWithdrawal(
        payments_pb2.InitiateWithdrawalRequest(amount_cents=20_00, currency="USD"),
        metadata=(*account.auth, *key()),
    )
    tx = started.transaction
    assert tx.status == "awaiting_withdrawal_code" and tx.type == payments_pb2.TRANSACTION_TYPE_WITHDRAWAL
    assert (started.quoted_payout.amount_cents, started.quoted_payout.currency) == (
        2_560_00,
        "KES",
    )  # 128 KES/USD
    assert started.quoted_payout == tx.converted_amount

    with pytest.raises(grpc.aio.AioRpcError) as no_key:
        await api.payments.ConfirmWithdrawal(
            payments_pb2.ConfirmWithdrawalRequest(transaction_id=tx.transaction_id, verification_code="x"),
            metadata=account.auth,
        )
    assert [v.field for v in details_of(no_key.value).violations] == ["idempotency_key"]

    confirmed = await api.payments.ConfirmWithdrawal(
        payments_pb2.ConfirmWithdrawalRequest(
            transaction_id=tx.transaction_id, verification_code=mailed_code(gateway)
        ),
        metadata=(*account.auth, *key()),
    )
    assert confirmed.transaction.transaction_id == tx.transaction_id
    assert confirmed.transaction.status == "mpesa_disbursement_sent"  # debited, payout reserved


async def test_a_wrong_withdrawal_code_names_the_field(payer: tuple[Harness, Account, Gateway]) -> None:
    api, account, _ = payer
    started = await api.payments.InitiateWithdrawal(
        payments_pb2.InitiateWithdrawalRequest(amount_cents=15_00, currency="USD"),
        metadata=(*account.auth, *key()),
    )
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await api.payments.ConfirmWithdrawal(
            payments_pb2.ConfirmWithdrawalRequest(
                transaction_id=started.transaction.transaction_id, verification_code="WRONGCODE1"
            ),
            metadata=(*account.auth, *key()),
        )
    assert wrong.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    parsed = details_of(wrong.value)
    assert parsed.error_info.reason == "VERIFICATION_CODE_REJECTED"
    assert [v.field for v in parsed.violations] == ["verification_code"]


async def test_money_moves_only_for_a_verified_user(start_api: StartApi, gateway: Gateway) -> None:
    api = await start_api(gateway=gateway)
    account = await api.new_account()  # phone not verified, no Deriv account
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.payments.InitiateDeposit(
            payments_pb2.InitiateDepositRequest(amount_cents=1_300_00, currency="KES"),
            metadata=(*account.auth, *key()),
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    parsed = details_of(refused.value)
    assert parsed.error_info.reason == "COMPLIANCE_REFUSED"
    assert parsed.error_info.metadata["rule"] == "PHONE_NOT_VERIFIED"


async def test_a_deposit_converting_below_deriv_s_minimum_is_an_invalid_amount_cents(
    payer: tuple[Harness, Account, Gateway],
) -> None:
    api, account, _ = payer
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.payments.InitiateDeposit(
            payments_pb2.InitiateDepositRequest(amount_cents=650_00, currency="KES"),  # USD 5.00
            metadata=(*account.auth, *key()),
        )

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    message = (
        "deposits must convert to between USD 10.00 and USD 2,000.00; KES 650.00 converts to USD 5.00"
        " at the quoted rate (deposit at least KES 1,300.00)"
    )
    assert refused.value.details() == message
    parsed = details_of(refused.value)
    assert parsed.error_info.reason == "DERIV_AMOUNT_OUT_OF_RANGE" and parsed.error_info.domain == "penpay.io"
    assert dict(parsed.error_info.metadata) == {"field": "amount_cents"}
    assert [(v.field, v.description) for v in parsed.violations] == [("amount_cents", message)]
    listed = await api.payments.ListTransactions(
        payments_pb2.ListTransactionsRequest(), metadata=account.auth
    )
    assert list(listed.transactions) == []


@pytest.mark.parametrize(
    ("cents", "side"),
    [(5_00, "USD 5.00 is below the minimum"), (2_000_01, "USD 2,000.01 is above the maximum")],
)
async def test_a_withdrawal_outside_deriv_s_limits_is_an_invalid_amount_cents(
    payer: tuple[Harness, Account, Gateway], cents: int, side: str
) -> None:
    api, account, gateway = payer
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.payments.InitiateWithdrawal(
            payments_pb2.InitiateWithdrawalRequest(amount_cents=cents, currency="USD"),
            metadata=(*account.auth, *key()),
        )

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == f"withdrawals must be between USD 10.00 and USD 2,000.00; {side}"
    parsed = details_of(refused.value)
    assert parsed.error_info.reason == "DERIV_AMOUNT_OUT_OF_RANGE"
    assert [v.field for v in parsed.violations] == ["amount_cents"]
    assert not [m for m in gateway.simulator.engine.books.mailbox if m.loginid == "CR90000001"]


async def test_a_deposit_the_float_cannot_pay_out_is_failed_precondition_until_funded(
    payer: tuple[Harness, Account, Gateway],
) -> None:
    api, account, _ = payer
    async with api.core.unit_of_work(actor="tests") as uow:  # USD 5 left at Deriv; the deposit needs 10
        await fund_float(uow, AccountKind.DERIV_AGENT_FLOAT, -(OPENING_USD - Money(5_00, Currency.USD)), "t")
        await uow.commit()
    same_key = key()

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.payments.InitiateDeposit(
            payments_pb2.InitiateDepositRequest(amount_cents=1_300_00, currency="KES"),
            metadata=(*account.auth, *same_key),
        )

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details() == (
        "PenPay cannot take this deposit right now: it cannot pay out 10.00 USD to your Deriv account at "
        "the moment. Nothing was charged; please try again later or with a smaller amount."
    )
    parsed = details_of(refused.value)
    assert parsed.error_info.reason == "FLOAT_INSUFFICIENT"
    assert parsed.error_info.metadata["rule"] == "DERIV_AGENT_FLOAT"
    listed = await api.payments.ListTransactions(
        payments_pb2.ListTransactionsRequest(), metadata=account.auth
    )
    assert list(listed.transactions) == []

    async with api.core.unit_of_work(actor="tests") as uow:
        await fund_float(uow, AccountKind.DERIV_AGENT_FLOAT, Money(100_00, Currency.USD), "t")
        await uow.commit()
    started = await api.payments.InitiateDeposit(
        payments_pb2.InitiateDepositRequest(amount_cents=1_300_00, currency="KES"),
        metadata=(*account.auth, *same_key),
    )
    assert started.transaction.status == "pending"


async def test_a_deposit_is_judged_by_the_limits_read_with_the_user(
    payer: tuple[Harness, Account, Gateway],
) -> None:
    """InitiateDeposit reads the AML figures in its one read with the user (not through the policy's
    own read): the daily amount and the hourly count still refuse, with the rule named."""
    api, account, _ = payer

    async def deposit(amount_cents: int) -> None:
        await api.payments.InitiateDeposit(
            payments_pb2.InitiateDepositRequest(amount_cents=amount_cents, currency="KES"),
            metadata=(*account.auth, *key()),
        )

    async def refused_by(amount_cents: int) -> str:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await deposit(amount_cents)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        parsed = details_of(refused.value)
        assert parsed.error_info.reason == "COMPLIANCE_REFUSED"
        return str(parsed.error_info.metadata["rule"])

    await deposit(200_000_00)  # of the day's KES 300,000
    assert await refused_by(200_000_00) == "DAILY_LIMIT"
    for _ in range(4):  # five started this hour in all
        await deposit(1_300_00)
    assert await refused_by(1_300_00) == "VELOCITY"

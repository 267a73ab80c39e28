"""Payment agent calls: verify_email, paymentagent_transfer, paymentagent_withdraw, and the PA listings.

Check order and messages follow bom-rpc's Cashier.pm and the rule-engine error map (2024 snapshot).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from ..accounts import COUNTRY_NAMES, Account
from ..books import InsufficientFunds
from ..engine import Ctx
from ..errors import ApiError, permission_denied
from ..money import CURRENCY_DIGITS, AmountError, as_decimal, decimal_places, format_amount, plain, to_minor

MARKETING_EMAIL = "marketing@deriv.com"
PA_TRANSFER_ERROR = "PaymentAgentTransferError"
PA_WITHDRAW_ERROR = "PaymentAgentWithdrawError"
VIRTUAL_WITHDRAW = (
    "Withdrawals are not possible on your demo account. You can only withdraw from a real account."
)


def _validate_amount(amount: Any, currency: str) -> str | None:
    """bom-rpc validate_amount: the message, or None if fine."""
    try:
        value = as_decimal(amount)
    except AmountError:
        return "Invalid amount."
    places = CURRENCY_DIGITS.get(currency)
    if places is None:
        return "Invalid currency."
    if decimal_places(value) > places:
        return f"Invalid amount. Amount provided can not have more than {places} decimal places."
    return None


def _timestamp(now: int) -> str:
    # Date::Utility datetime_ddmmmyy_hhmmss_TZ, e.g. 22-Nov-26 01:22:33GMT
    return time.strftime("%d-%b-%y %H:%M:%SGMT", time.gmtime(now))


def _is_pa(account: Account | None) -> bool:
    return (
        account is not None
        and account.payment_agent is not None
        and account.payment_agent.status == "authorized"
    )


def _within_limits(pa: Account, amount: Decimal, code: str) -> None:
    assert pa.payment_agent is not None
    lo, hi = pa.payment_agent.min_withdrawal, pa.payment_agent.max_withdrawal
    minor = amount.scaleb(CURRENCY_DIGITS[pa.currency])
    if minor < lo or minor > hi:
        raise ApiError(
            code, f"Invalid amount. Minimum is {plain(lo, pa.currency)}, maximum is {plain(hi, pa.currency)}."
        )


# ---- verify_email -----------------------------------------------------------------------------------------


def verify_email(ctx: Ctx) -> dict[str, Any]:
    email = ctx.args["verify_email"]
    type_ = ctx.args["type"]
    books = ctx.books
    ttl = ctx.engine.config.verification_code_ttl
    params = dict(ctx.args.get("url_parameters", {}))
    if type_ == "paymentagent_withdraw":
        account = ctx.account if ctx.session.loginid else None
        # not logged in, or someone else's address: answer 1 and send nothing (no email enumeration)
        if account is None or account.email.lower() != email.lower():
            return {"verify_email": 1}
        if account.is_virtual:
            raise ApiError(
                "PaymentAgentVirtualClient",
                VIRTUAL_WITHDRAW,
            )
        if account.balance <= 0:
            raise ApiError(
                "NoBalanceVerifyMail",
                f"Withdrawal isn't possible because you have no funds in your {account.currency} account.",
            )
        books.issue_code(email, type_, account.loginid, ctx.now, ttl, params)
        return {"verify_email": 1}
    owner = next((a for a in books.accounts.values() if a.email.lower() == email.lower()), None)
    if owner is not None or type_ == "account_opening":
        books.issue_code(email, type_, owner.loginid if owner else None, ctx.now, ttl, params)
    return {"verify_email": 1}


# ---- paymentagent_transfer (PA -> client deposit) ---------------------------------------------------------


def paymentagent_transfer(ctx: Ctx) -> dict[str, Any]:
    pa = ctx.account
    assert pa is not None
    args = ctx.args
    if pa.is_virtual:
        raise permission_denied()
    currency = args["currency"]
    amount = args["amount"]
    description = str(args.get("description", "")).strip()
    to_loginid = args["transfer_to"].upper()

    def fail(message: str) -> ApiError:
        return ApiError(PA_TRANSFER_ERROR, message)

    problem = _validate_amount(amount, currency)
    if problem:
        raise fail(problem)
    if not _is_pa(pa):
        raise fail("You are not authorized for transfers via payment agents.")
    assert pa.payment_agent is not None
    client = ctx.books.account(to_loginid)
    if client is None:
        raise fail(f"Login ID ({to_loginid}) does not exist.")
    if client.residence not in pa.payment_agent.countries:
        raise fail(
            "We're unable to process this transfer because the client's resident country is not within "
            f"your portfolio. Please contact {MARKETING_EMAIL} for more info."
        )
    # rule engine
    if client.loginid == pa.loginid:
        raise fail("Payment agent transfers are not allowed within the same account.")
    if client.is_virtual or client.landing_company_name != pa.landing_company_name:
        raise fail("Payment agent transfers are not allowed for the specified accounts.")
    if client.disabled:
        raise fail(f"You cannot transfer to account {client.loginid}, as their account is disabled.")
    if currency != pa.currency:
        raise fail(
            f"You cannot perform this action, as {currency} is not the default account currency for "
            f"payment agent {pa.loginid}."
        )
    if currency != client.currency:
        raise fail(
            f"You cannot perform this action, as {currency} is not the default account currency for "
            f"client {client.loginid}."
        )
    value = as_decimal(amount)
    _within_limits(pa, value, PA_TRANSFER_ERROR)
    minor = to_minor(value, currency)
    if pa.balance < minor:
        raise fail("Your account balance is insufficient for this transaction.")

    if args.get("dry_run") == 1:
        return {
            "paymentagent_transfer": 2,
            "client_to_full_name": client.fullname,
            "client_to_loginid": client.loginid,
        }
    reference = ctx.books.ids.uuid().upper()
    remark = (
        f"Transfer from Payment Agent {pa.payment_agent.name} ({pa.loginid}) to {client.loginid}. "
        f"Transaction reference: {reference}. Timestamp: {_timestamp(ctx.now)}."
        + (f" Agent note: {description}" if description else "")
    )
    try:
        transfer = ctx.books.move(
            "paymentagent_transfer",
            pa,
            client,
            minor,
            description,
            remark,
            reference,
            ctx.now,
            ctx.session.app_id,
        )
    except InsufficientFunds:
        raise fail("Your account balance is insufficient for this transaction.") from None
    return {
        "paymentagent_transfer": 1,
        "client_to_full_name": client.fullname,
        "client_to_loginid": client.loginid,
        "transaction_id": transfer.debit_transaction_id,
    }


# ---- paymentagent_withdraw (client -> PA) -----------------------------------------------------------------


def paymentagent_withdraw(ctx: Ctx) -> dict[str, Any]:
    client = ctx.account
    assert client is not None
    args = ctx.args
    dry_run = args.get("dry_run", 0) == 1
    if not dry_run:
        # the code is checked first and deleted on check, even if the withdrawal then fails
        problem_code = ctx.books.consume_code(
            args["verification_code"], client.email, "paymentagent_withdraw", ctx.engine.clock.now()
        )
        if problem_code == "InvalidToken":
            raise ApiError("InvalidToken", "Your token has expired or is invalid.")
        if problem_code == "BadSession":
            raise ApiError(
                "BadSession",
                "The token you used is invalid in this session. Please get a new token and try again.",
            )
    currency = args["currency"]
    amount = args["amount"]
    description = str(args.get("description", "")).strip()
    pa_loginid = args["paymentagent_loginid"].upper()

    def fail(message: str) -> ApiError:
        return ApiError(PA_WITHDRAW_ERROR, message)

    problem = _validate_amount(amount, currency)
    if problem:
        raise fail(problem)
    pa = ctx.books.account(pa_loginid)
    if not _is_pa(pa):
        raise fail("Please enter a valid payment agent ID.")
    assert pa is not None and pa.payment_agent is not None
    # rule engine
    if client.is_virtual:
        raise fail(
            "Withdrawals are not possible on your demo account. You can only withdraw from a real account."
        )
    if client.loginid == pa.loginid:
        raise fail("You cannot withdraw funds to the same account.")
    if client.landing_company_name != pa.landing_company_name:
        raise fail("Payment agent withdrawals are not allowed for specified accounts.")
    if pa.disabled:
        raise fail(
            f"You cannot perform the withdrawal to account {pa.loginid}, "
            "as the payment agent's account is disabled."
        )
    if currency != client.currency:
        raise fail(
            f"You cannot perform this action, as {currency} is not default currency for your account "
            f"{client.loginid}."
        )
    if currency != pa.currency:
        raise fail(
            f"You cannot perform this action, as {currency} is not default currency for "
            f"payment agent account {pa.loginid}."
        )
    value = as_decimal(amount)
    _within_limits(pa, value, PA_WITHDRAW_ERROR)
    minor = to_minor(value, currency)
    if client.balance < minor:
        raise fail(
            f"Sorry, you cannot withdraw. Your account balance is {format_amount(client.balance, currency)} "
            f"{currency}."
        )
    if client.residence not in pa.payment_agent.countries:
        raise fail(
            "We're unable to process this withdrawal because your country of residence is not within the "
            f"payment agent's portfolio. Please contact {MARKETING_EMAIL} for more info."
        )
    if dry_run:
        return {"paymentagent_withdraw": 2, "paymentagent_name": pa.payment_agent.name}
    reference = ctx.books.ids.uuid().upper()
    remark = (
        f"Transfer from {client.loginid} to Payment Agent {pa.payment_agent.name} ({pa.loginid}) "
        f"Transaction reference: {reference} Timestamp: {_timestamp(ctx.now)}"
        + (f". Client note: {description}" if description else "")
    )
    try:
        transfer = ctx.books.move(
            "paymentagent_withdraw",
            client,
            pa,
            minor,
            description,
            remark,
            reference,
            ctx.now,
            ctx.session.app_id,
        )
    except InsufficientFunds:
        raise fail(
            f"Sorry, you cannot withdraw. Your account balance is {format_amount(client.balance, currency)} "
            f"{currency}."
        ) from None
    return {
        "paymentagent_withdraw": 1,
        "paymentagent_name": pa.payment_agent.name,
        "transaction_id": transfer.debit_transaction_id,
    }


def paymentagent_withdraw_justification(ctx: Ctx) -> dict[str, Any]:
    return {"paymentagent_withdraw_justification": 1}


# ---- listings ---------------------------------------------------------------------------------------------


def paymentagent_list(ctx: Ctx) -> dict[str, Any]:
    country = ctx.args["paymentagent_list"].lower()
    currency = ctx.args.get("currency")
    agents = [a for a in ctx.books.accounts.values() if _is_pa(a)]
    listed: list[dict[str, Any]] = []
    for a in agents:
        pa = a.payment_agent
        assert pa is not None
        if country not in pa.countries or (currency is not None and currency != a.currency):
            continue
        listed.append(
            {
                "currencies": a.currency,
                "deposit_commission": f"{pa.commission_deposit:g}",
                "email": pa.email or a.email,
                "further_information": pa.information,
                "max_withdrawal": format_amount(pa.max_withdrawal, a.currency),
                "min_withdrawal": format_amount(pa.min_withdrawal, a.currency),
                "name": pa.name,
                "paymentagent_loginid": a.loginid,
                "phone_numbers": [{"phone_number": p} for p in pa.phone_numbers],
                "summary": pa.summary,
                "supported_payment_methods": [{"payment_method": m} for m in pa.supported_payment_methods],
                "urls": [{"url": u} for u in pa.urls],
                "withdrawal_commission": f"{pa.commission_withdrawal:g}",
            }
        )
    listed.sort(key=lambda item: str(item["name"]).lower())
    countries = sorted({c for a in agents if a.payment_agent for c in a.payment_agent.countries})
    return {
        "paymentagent_list": {
            "available_countries": [[c, COUNTRY_NAMES.get(c, c.upper())] for c in countries],
            "list": listed,
        }
    }


def paymentagent_details(ctx: Ctx) -> dict[str, Any]:
    a = ctx.account
    assert a is not None
    pa = a.payment_agent
    if pa is None:
        return {"paymentagent_details": {"can_apply": 0}}
    return {
        "paymentagent_details": {
            "affiliate_id": None,
            "can_apply": 0,
            "code_of_conduct_approval": 1,
            "commission_deposit": pa.commission_deposit,
            "commission_withdrawal": pa.commission_withdrawal,
            "currency_code": a.currency,
            "email": pa.email or a.email,
            "information": pa.information,
            "max_withdrawal": float(format_amount(pa.max_withdrawal, a.currency)),
            "min_withdrawal": float(format_amount(pa.min_withdrawal, a.currency)),
            "newly_authorized": 0,
            "payment_agent_name": pa.name,
            "phone_numbers": [{"phone_number": p} for p in pa.phone_numbers],
            "status": pa.status,
            "supported_payment_methods": [{"payment_method": m} for m in pa.supported_payment_methods],
            "target_country": pa.countries[0] if pa.countries else a.residence,
            "urls": [{"url": u} for u in pa.urls],
        }
    }

"""Session-level calls: authorize, logout, ping, time, forget, forget_all, website_status."""

from __future__ import annotations

from typing import Any

from ..engine import Ctx
from ..errors import ApiError
from ..money import CRYPTO, CURRENCY_DIGITS, CURRENCY_NAMES, to_number
from .account import account_entry


def authorize(ctx: Ctx) -> dict[str, Any]:
    books = ctx.books
    token = books.tokens.get(ctx.args["authorize"])
    if token is None:
        raise ApiError("InvalidToken", "The token is invalid.")
    account = books.account(token.loginid)
    if account is None:
        raise ApiError("InvalidToken", "The token is invalid.")
    if account.disabled:
        raise ApiError("AccountDisabled", "Account is disabled.")
    extra = []
    for value in ctx.args.get("tokens", []):
        other = books.tokens.get(value)
        if other is None:
            raise ApiError("InvalidToken", "The token is invalid.")
        other_account = books.account(other.loginid)
        if other_account is None or other_account.user_id != account.user_id:
            raise ApiError("InvalidToken", "Token is not valid for current user.")
        extra.append(other)
    ctx.session.bind(token, extra)
    local = {"KES": {"fractional_digits": 2}} if account.residence == "ke" else {}
    return {
        "authorize": {
            "account_list": [account_entry(a) for a in books.siblings(account)],
            "balance": to_number(account.balance, account.currency),
            "country": account.residence,
            "currency": account.currency,
            "email": account.email,
            "fullname": account.fullname,
            "is_virtual": int(account.is_virtual),
            "landing_company_fullname": account.landing_company_fullname,
            "landing_company_name": account.landing_company_name,
            "linked_to": [],
            "local_currencies": local,
            "loginid": account.loginid,
            "preferred_language": "EN",
            "scopes": list(token.scopes),
            "upgradeable_landing_companies": ["svg"],
            "user_id": account.user_id,
        }
    }


def logout(ctx: Ctx) -> dict[str, Any]:
    ctx.session.unbind()
    return {"logout": 1}


def ping(ctx: Ctx) -> dict[str, Any]:
    return {"ping": "pong"}


def time_(ctx: Ctx) -> dict[str, Any]:
    return {"time": ctx.now}


def forget(ctx: Ctx) -> dict[str, Any]:
    removed = ctx.session.subscriptions.pop(ctx.args["forget"], None)
    return {"forget": 1 if removed is not None else 0}


def forget_all(ctx: Ctx) -> dict[str, Any]:
    value = ctx.args["forget_all"]
    types = {value} if isinstance(value, str) else set(value)
    ids = [s.id for s in ctx.session.subscriptions.values() if s.type in types]
    for sub_id in ids:
        del ctx.session.subscriptions[sub_id]
    return {"forget_all": ids}


def website_status(ctx: Ctx) -> dict[str, Any]:
    currencies = {}
    for cur, places in CURRENCY_DIGITS.items():
        crypto = cur in CRYPTO
        currencies[cur] = {
            "fractional_digits": places,
            "is_deposit_suspended": 0,
            "is_suspended": 0,
            "is_withdrawal_suspended": 0,
            "name": CURRENCY_NAMES[cur],
            "stake_default": 0.0001 if crypto else 10,
            "transfer_between_accounts": {
                "fees": {},
                "limits": {"min": 0.0002 if crypto else 1, "max": 1 if crypto else 2500},
            },
            "type": "crypto" if crypto else "fiat",
        }
    payload: dict[str, Any] = {
        "website_status": {
            "api_call_limits": ctx.engine.limiter.api_call_limits(),
            "broker_codes": ["CR", "VRTC"],
            "clients_country": "ke",
            "currencies_config": currencies,
            "payment_agents": {"initial_deposit_per_country": {"default": 0}},
            "site_status": "up",
            "supported_languages": ["EN"],
            "terms_conditions_version": "Version 4.2.0 2020-11-17",
        }
    }
    if ctx.args.get("subscribe") == 1:
        sub = ctx.session.subscribe("website_status", ctx.args, None)
        payload["subscription"] = {"id": sub.id}
    return payload

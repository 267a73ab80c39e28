"""Account calls: balance, get_settings, account_list, statement, transaction."""

from __future__ import annotations

from typing import Any

from ..accounts import COUNTRY_NAMES, Account
from ..engine import Ctx
from ..errors import ApiError, permission_denied
from ..money import to_number


def account_entry(account: Account) -> dict[str, Any]:
    return {
        "account_category": "trading",
        "account_type": "binary",
        "broker": account.broker,
        "created_at": account.created_at,
        "currency": account.currency,
        "currency_type": account.currency_type,
        "is_disabled": int(account.disabled),
        "is_virtual": int(account.is_virtual),
        "landing_company_name": account.landing_company_name,
        "linked_to": [],
        "loginid": account.loginid,
    }


def _account(ctx: Ctx) -> Account:
    assert ctx.account is not None  # auth_required calls
    return ctx.account


def balance(ctx: Ctx) -> dict[str, Any]:
    me = _account(ctx)
    target = ctx.args.get("account", "current")
    subscribe = ctx.args.get("subscribe") == 1
    if target == "all":
        siblings = ctx.books.siblings(me)
        accounts = {
            a.loginid: {
                "balance": to_number(a.balance, a.currency),
                "converted_amount": to_number(a.balance, a.currency) if a.currency == me.currency else 0,
                "currency": a.currency,
                "demo_account": int(a.is_virtual),
                "status": int(not a.disabled),
                "type": "deriv",
            }
            for a in siblings
        }
        real = sum(a.balance for a in siblings if not a.is_virtual and a.currency == me.currency)
        demo = sum(a.balance for a in siblings if a.is_virtual and a.currency == me.currency)
        body: dict[str, Any] = {
            "accounts": accounts,
            "balance": to_number(me.balance, me.currency),
            "currency": me.currency,
            "loginid": me.loginid,
            "total": {
                "deriv": {"amount": to_number(real, me.currency), "currency": me.currency},
                "deriv_demo": {"amount": to_number(demo, me.currency), "currency": me.currency},
                "mt5": {"amount": 0, "currency": me.currency},
                "mt5_demo": {"amount": 0, "currency": me.currency},
            },
        }
        watched = me.loginid
    else:
        account = me
        if target != "current":
            other = ctx.books.account(target)
            if other is None or other.user_id != me.user_id:
                raise permission_denied()
            account = other
        if not account.currency:
            raise ApiError("NoAccountCurrency", "Please set the currency for your existing account.")
        body = {
            "balance": to_number(account.balance, account.currency),
            "currency": account.currency,
            "loginid": account.loginid,
        }
        watched = account.loginid
    payload: dict[str, Any] = {"balance": body}
    if subscribe:
        sub = ctx.session.subscribe(
            "balance",
            ctx.args,
            watched,
            all_accounts=target == "all",
            already=f"You are already subscribed to balance for account {watched}.",
        )
        body["id"] = sub.id
        payload["subscription"] = {"id": sub.id}
    return payload


def get_settings(ctx: Ctx) -> dict[str, Any]:
    a = _account(ctx)
    country = COUNTRY_NAMES.get(a.residence, a.residence.upper())
    settings: dict[str, Any] = {
        "country": country,
        "country_code": a.residence,
        "email": a.email,
        "email_consent": 0,
        "feature_flag": {"wallet": 0},
        "preferred_language": "EN",
        "residence": country,
        "user_hash": f"{a.user_id:064x}",
    }
    if not a.is_virtual:
        settings.update(
            {
                "account_opening_reason": "Income Earning",
                "address_city": a.address_city,
                "address_line_1": a.address_line_1,
                "address_line_2": "",
                "address_postcode": a.address_postcode,
                "address_state": a.address_state,
                "allow_copiers": 0,
                "citizen": a.residence,
                "client_tnc_status": "Version 4.2.0 2020-11-17",
                "date_of_birth": a.date_of_birth,
                "first_name": a.first_name,
                "has_secret_answer": 0,
                "immutable_fields": ["citizen", "date_of_birth", "first_name", "last_name", "residence"],
                "is_authenticated_payment_agent": int(
                    a.payment_agent is not None and a.payment_agent.status == "authorized"
                ),
                "last_name": a.last_name,
                "non_pep_declaration": 1,
                "phone": a.phone,
                "place_of_birth": a.residence,
                "request_professional_status": 0,
                "salutation": "",
                "tax_identification_number": None,
                "tax_residence": None,
            }
        )
    return {"get_settings": settings}


def account_list(ctx: Ctx) -> dict[str, Any]:
    entries = []
    for a in ctx.books.siblings(_account(ctx)):
        entry = account_entry(a)
        del entry["currency_type"]  # not in account_list's schema (authorize.account_list has it)
        entries.append(entry)
    return {"account_list": entries}


def statement(ctx: Ctx) -> dict[str, Any]:
    a = _account(ctx)
    args = ctx.args
    entries = sorted(ctx.books.statement(a.loginid), key=lambda e: e.transaction_id, reverse=True)
    action = args.get("action_type")
    if action is not None:
        entries = [e for e in entries if e.action_type == action]
    if "date_from" in args:
        entries = [e for e in entries if e.time >= args["date_from"]]
    if "date_to" in args:
        entries = [e for e in entries if e.time <= args["date_to"]]
    offset = int(args.get("offset", 0))
    limit = int(args.get("limit", 100))
    page = entries[offset : offset + limit]
    with_description = args.get("description") == 1
    rows = []
    for e in page:
        row: dict[str, Any] = {
            "action_type": e.action_type,
            "amount": to_number(e.amount, e.currency),
            "app_id": None,
            "balance_after": to_number(e.balance_after, e.currency),
            "contract_id": None,
            "payout": None,
            "reference_id": e.reference_id,
            "transaction_id": e.transaction_id,
            "transaction_time": e.time,
        }
        if e.from_loginid:
            row["from"] = {"loginid": e.from_loginid}
        if e.to_loginid:
            row["to"] = {"loginid": e.to_loginid}
        if with_description:
            row["longcode"] = e.longcode
            row["shortcode"] = None
        rows.append(row)
    return {"statement": {"count": len(rows), "transactions": rows}}


def transaction(ctx: Ctx) -> dict[str, Any]:
    a = _account(ctx)
    sub = ctx.session.subscribe(
        "transaction", ctx.args, a.loginid, already="You are already subscribed to transaction."
    )
    return {"transaction": {"id": sub.id}, "subscription": {"id": sub.id}}

"""`penpay float fund`: book money the operator put into (or, negative, took out of) a float.

The ledger's floats mirror the real Deriv agent balance and the M-Pesa B2C float; payments
that would overdraw one wait (FloatLow events) until it is funded. Audited.
"""

from __future__ import annotations

import argparse
import asyncio

KINDS = {"deriv": "DERIV_AGENT_FLOAT", "mpesa": "MPESA_FLOAT"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("float", help="fund a float account (Deriv agent USD, M-Pesa KES)")
    sub = parser.add_subparsers(dest="float_command", required=True, metavar="ACTION")
    fund = sub.add_parser("fund", help="book a float funding")
    fund.add_argument("kind", choices=sorted(KINDS), help="deriv (USD) or mpesa (KES)")
    fund.add_argument("amount_cents", type=int, help="minor units; negative takes money out")
    fund.add_argument("--note", default="operator funding", help="why (audited)")
    fund.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    fund.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from application.payments.floats import fund_float
    from domain.wallet.account_kind import AccountKind
    from domain.wallet.money import Currency, Money
    from penpay.bootstrap import bootstrap
    from penpay.settings import get_settings

    settings = get_settings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    kind = AccountKind(KINDS[args.kind])
    currency = Currency.USD if args.kind == "deriv" else Currency.KES
    if args.amount_cents == 0:
        print("amount_cents must not be 0")
        return 2
    core = bootstrap(settings, pool_size=1)
    try:
        async with core.unit_of_work(actor="operator:cli") as uow:
            await fund_float(uow, kind, Money(args.amount_cents, currency), args.note)
            await uow.commit()
            account = await _balance(core, kind, currency)
    finally:
        await core.close()
    print(f"{kind.value} {currency.value} balance: {account}")
    return 0


async def _balance(core, kind, currency):  # type: ignore[no-untyped-def]
    async with core.unit_of_work() as uow:
        account = await uow.ledger.get_or_create_account(kind=kind, currency=currency)
        return account.balance.to_decimal_string()

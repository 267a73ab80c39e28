"""`penpay float fund`: book money the operator put into (or, negative, took out of) a float.

The ledger's floats mirror the real Deriv agent balance and the M-Pesa B2C float; payments
that would overdraw one wait (FloatLow events) until it is funded. Booked against CAPITAL (the
house's own money, never SUSPENSE); audited.

The amount is written as money is, with its currency (`penpay float fund deriv USD 1000`,
`penpay float fund mpesa KES 50000.00`): a bare number of cents is one slip away from a
hundredfold error, and a currency that is not the float's says the operator meant another float.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from penpay import event_loop

if TYPE_CHECKING:
    from domain.wallet.account_kind import AccountKind
    from domain.wallet.money import Currency, Money
    from penpay.bootstrap import Core

KINDS = {"deriv": "DERIV_AGENT_FLOAT", "mpesa": "MPESA_FLOAT"}
CURRENCIES = {"deriv": "USD", "mpesa": "KES"}
EXAMPLE = "e.g. USD 1000 or KES 50000.00"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("float", help="fund a float account (Deriv agent USD, M-Pesa KES)")
    sub = parser.add_subparsers(dest="float_command", required=True, metavar="ACTION")
    fund = sub.add_parser(
        "fund",
        help="book money put into (or, negative, taken out of) a float",
        description="Book money the operator put into a float, or took out of it (negative). Audited.",
        epilog="examples: penpay float fund deriv USD 1000 | penpay float fund mpesa KES 50000.00 | "
        "penpay float fund mpesa KES -2500",
    )
    fund.add_argument("kind", choices=sorted(KINDS), help="deriv (the agent's USD) or mpesa (the B2C KES)")
    fund.add_argument(
        "amount",
        nargs="+",
        metavar="CURRENCY AMOUNT",
        help=f"the amount with its currency, {EXAMPLE}; negative takes money out",
    )
    fund.add_argument("--note", default="operator funding", help="why (audited)")
    fund.add_argument("--database-url", help="overrides PENPAY_DATABASE_URL")
    fund.set_defaults(handler=run)


def parse_amount(words: list[str], *, expected: Currency) -> Money:
    """["USD", "1000"] or ["USD 1000"] -> Money; ValueError (saying what is expected) otherwise."""
    from domain.wallet.money import Currency, Money

    parts = " ".join(words).split()
    if len(parts) != 2 or not parts[0].isalpha():
        raise ValueError(f"expected the amount with its currency, {EXAMPLE}; got {' '.join(words)!r}")
    code, text = parts[0].upper(), parts[1].replace(",", "")
    if code not in Currency.__members__:
        raise ValueError(f"expected the currency USD or KES, got {parts[0]!r}")
    currency = Currency(code)
    if currency is not expected:
        raise ValueError(f"this float holds {expected.value}, not {currency.value}")
    try:
        amount = Money.parse(text, currency)
    except Exception as error:  # the domain's InvalidAmount says what was wrong with it
        raise ValueError(f"expected an amount like 1000 or 50000.00: {error}") from None
    if amount.is_zero():
        raise ValueError("the amount must not be 0")
    return amount


def run(args: argparse.Namespace) -> int:
    return event_loop.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    from application.payments.floats import fund_float
    from domain.wallet.account_kind import AccountKind
    from domain.wallet.money import Currency
    from penpay.bootstrap import bootstrap
    from penpay.settings import get_settings

    settings = get_settings()
    if args.database_url:
        settings = settings.model_copy(update={"database_url": args.database_url})
    kind = AccountKind(KINDS[args.kind])
    try:
        amount = parse_amount(args.amount, expected=Currency(CURRENCIES[args.kind]))
    except ValueError as error:
        print(f"penpay float fund: {error}", file=sys.stderr)
        return 2
    currency = amount.currency
    core = bootstrap(settings, pool_size=1)
    try:
        async with core.unit_of_work(actor="operator:cli") as uow:
            await fund_float(uow, kind, amount, args.note)
            await uow.commit()
            account = await _balance(core, kind, currency)
    finally:
        await core.close()
    print(f"{kind.value} {currency.value} balance: {account}")
    return 0


async def _balance(core: Core, kind: AccountKind, currency: Currency) -> str:
    async with core.unit_of_work() as uow:
        account = await uow.ledger.get_or_create_account(kind=kind, currency=currency)
        text: str = account.balance.to_decimal_string()
        return text

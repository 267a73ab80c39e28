"""The demo's closing report: balances on every side and the user's ledger, as text lines."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proving.demo.journey import JourneyResult


def money(cents: int, currency: str) -> str:
    """12345600, "KES" -> "KES 123,456.00" (exact: Decimal, never a float)."""
    sign = "-" if cents < 0 else ""
    return f"{sign}{currency} {Decimal(abs(cents)).scaleb(-2):,.2f}"


def signed(cents: int) -> str:
    """+20.00 / -10.00"""
    return f"{'-' if cents < 0 else '+'}{Decimal(abs(cents)).scaleb(-2):,.2f}"


def render(result: JourneyResult) -> list[str]:
    r = result
    lines = ["", "Balances"]
    lines.append(
        f"  Deriv {r.deriv_login_id:<14} {money(r.deriv_after_withdrawal_cents, 'USD')} "
        f"(was {money(r.deriv_before_cents, 'USD')}; "
        f"deposit {signed(r.deriv_after_deposit_cents - r.deriv_before_cents)}, "
        f"withdrawal {signed(r.deriv_after_withdrawal_cents - r.deriv_after_deposit_cents)})"
    )
    charged = r.mpesa_after_withdrawal.charged_cents - r.mpesa_before.charged_cents
    received = r.mpesa_after_withdrawal.paid_cents - r.mpesa_before.paid_cents
    lines.append(
        f"  M-Pesa {r.phone:<13} charged {money(charged, 'KES')}, received {money(received, 'KES')} "
        f"(net {signed(received - charged)} KES)"
    )
    if r.paybill_deposit is not None:
        p = r.paybill_deposit
        lines.append(
            f"  Paybill {r.paybill_business_number} account {r.paybill_reference}: "
            f"{money(p.amount_cents, p.currency)} (TransID {r.paybill_trans_id}) -> "
            f"{money(p.converted_cents, p.converted_currency)} on Deriv, then "
            f"{money(r.deriv_after_paybill_cents, 'USD')}"
        )
    wallet = ", ".join(money(c, cur) for cur, c in sorted(r.wallet_balances.items())) or "no accounts"
    lines.append(f"  PenPay wallet        {wallet}")

    lines += ["", f"Ledger of {r.email} ({len(r.ledger)} entries, oldest first)"]
    totals: dict[str, int] = defaultdict(int)
    kinds = {t.transaction_id: t.kind for t in (r.deposit, r.withdrawal) if t is not None}
    for e in r.ledger:
        totals[e.currency] += e.balance_change_cents
        kind = kinds.get(e.transaction_id, "")
        lines.append(
            f"  {e.created_at[:19]:<19} {kind:<10} {e.side:<6} {money(e.amount_cents, e.currency):>16} "
            f"{signed(e.balance_change_cents):>12}  {e.description}"
        )
    for currency, total in sorted(totals.items()):
        balance = money(r.wallet_balances.get(currency, 0), currency)
        lines.append(f"  net {currency}: {signed(total)} (wallet balance {balance})")
    return lines

"""The postings of both sagas, in one place (what the consistency checker expects).

Deposit (per transaction):
  received     Dr MPESA_FLOAT KES  / Cr USER_WALLET KES          amount
  converted    Dr USER_WALLET KES  / Cr FX KES                   amount
               Dr FX USD           / Cr USER_WALLET USD          converted_amount
  transfer     Dr USER_WALLET USD  / Cr DERIV_AGENT_FLOAT USD    converted_amount  (reserved before sending)
  refused      the mirror of `transfer`
  proven       `transfer` again, when review proves Deriv paid after all (the refusal gave it back)
  refund       (two people approved giving the KES back by B2C, after Deriv refused for good)
               the mirror of `converted`, then
               Dr USER_WALLET KES  / Cr MPESA_FLOAT KES          amount            (reserved before sending)
  refund failed  the mirror of the refund's payout (the KES waits in the user's wallet for a person)
Withdrawal:
  debited      Dr DERIV_AGENT_FLOAT USD / Cr USER_WALLET USD     amount
  converted    Dr USER_WALLET USD  / Cr FX USD                   amount
               Dr FX KES           / Cr USER_WALLET KES          converted_amount
  payout       Dr USER_WALLET KES  / Cr MPESA_FLOAT KES          converted_amount  (reserved before sending)
  reversal     the mirrors of `payout` and `converted`, then a `transfer` back of amount USD

Reconciliation (money a provider moved that no PenPay transaction explains):
  into a float Dr MPESA_FLOAT or DERIV_AGENT_FLOAT / Cr SUSPENSE   amount
  out of one   Dr SUSPENSE / Cr the float                          amount

The FX account holds both legs of every conversion; what the rounding down kept (the
residue) stays there, per currency, and is reported in the posting's description.
"""

from __future__ import annotations

from domain.payments.transaction import Transaction
from domain.shared.ids import LedgerAccountId
from domain.wallet.account_kind import AccountKind as K
from domain.wallet.ledger_entry import PostingLine, credit, debit
from domain.wallet.money import Currency, Money
from domain.wallet.ports import LedgerRepository
from domain.wallet.posting import Posting


async def _account(
    ledger: LedgerRepository, kind: K, currency: Currency, tx: Transaction | None = None
) -> LedgerAccountId:
    user_id = tx.user_id if kind is K.USER_WALLET and tx is not None else None
    return await ledger.account_id(kind=kind, currency=currency, user_id=user_id)


async def _posting(
    ledger: LedgerRepository,
    tx: Transaction,
    description: str,
    legs: list[tuple[K, K, Money]],
) -> Posting:
    """Each leg: (debited kind, credited kind, amount)."""
    lines: list[PostingLine] = []
    for debited, credited, amount in legs:
        lines.append(debit(await _account(ledger, debited, amount.currency, tx), amount))
        lines.append(credit(await _account(ledger, credited, amount.currency, tx), amount))
    return Posting.create(lines=lines, description=description, transaction_id=tx.id)


def _converted(tx: Transaction) -> Money:
    assert tx.converted_amount is not None  # every transaction is created with its quote
    return tx.converted_amount


def _rate(tx: Transaction) -> str:
    rate = tx.locked_rate
    return (
        "" if rate is None else f" at {rate.rate.numerator}/{rate.rate.denominator} (quote {rate.quote_id})"
    )


# --- deposit ----------------------------------------------------------------------------


async def deposit_received(ledger: LedgerRepository, tx: Transaction) -> list[Posting]:
    kes, usd = tx.amount, _converted(tx)
    return [
        await _posting(ledger, tx, "deposit: M-Pesa payment received", [(K.MPESA_FLOAT, K.USER_WALLET, kes)]),
        await _posting(
            ledger,
            tx,
            f"deposit: KES to USD{_rate(tx)}",
            [(K.USER_WALLET, K.FX, kes), (K.FX, K.USER_WALLET, usd)],
        ),
    ]


async def deposit_transfer(ledger: LedgerRepository, tx: Transaction) -> Posting:
    return await _posting(
        ledger,
        tx,
        "deposit: Deriv transfer to the user",
        [(K.USER_WALLET, K.DERIV_AGENT_FLOAT, _converted(tx))],
    )


async def deposit_transfer_refused(ledger: LedgerRepository, tx: Transaction) -> Posting:
    return await _posting(
        ledger,
        tx,
        "deposit: Deriv refused the transfer, USD back to the user's wallet",
        [(K.DERIV_AGENT_FLOAT, K.USER_WALLET, _converted(tx))],
    )


async def deposit_transfer_proven(ledger: LedgerRepository, tx: Transaction) -> Posting:
    """An operator proved (on Deriv's statement) a transfer the saga had booked as refused."""
    return await _posting(
        ledger,
        tx,
        "deposit: Deriv transfer proven by review",
        [(K.USER_WALLET, K.DERIV_AGENT_FLOAT, _converted(tx))],
    )


async def deposit_refund(ledger: LedgerRepository, tx: Transaction) -> list[Posting]:
    """Reversing postings of a deposit Deriv refused for good, and the refund's B2C reservation."""
    kes, usd = tx.amount, _converted(tx)
    return [
        await _posting(
            ledger,
            tx,
            "deposit refunded: USD back to KES at the same quote",
            [(K.USER_WALLET, K.FX, usd), (K.FX, K.USER_WALLET, kes)],
        ),
        await _posting(
            ledger, tx, "deposit refunded: B2C refund to the customer", [(K.USER_WALLET, K.MPESA_FLOAT, kes)]
        ),
    ]


async def deposit_refund_failed(ledger: LedgerRepository, tx: Transaction) -> Posting:
    return await _posting(
        ledger,
        tx,
        "deposit refund not paid: KES back to the user's wallet",
        [(K.MPESA_FLOAT, K.USER_WALLET, tx.amount)],
    )


# --- withdrawal -------------------------------------------------------------------------


async def withdrawal_debited(ledger: LedgerRepository, tx: Transaction) -> list[Posting]:
    usd, kes = tx.amount, _converted(tx)
    return [
        await _posting(
            ledger, tx, "withdrawal: Deriv account debited", [(K.DERIV_AGENT_FLOAT, K.USER_WALLET, usd)]
        ),
        await _posting(
            ledger,
            tx,
            f"withdrawal: USD to KES{_rate(tx)}",
            [(K.USER_WALLET, K.FX, usd), (K.FX, K.USER_WALLET, kes)],
        ),
    ]


async def withdrawal_payout(ledger: LedgerRepository, tx: Transaction) -> Posting:
    return await _posting(
        ledger, tx, "withdrawal: B2C payout", [(K.USER_WALLET, K.MPESA_FLOAT, _converted(tx))]
    )


async def withdrawal_reversal(ledger: LedgerRepository, tx: Transaction) -> list[Posting]:
    usd, kes = tx.amount, _converted(tx)
    return [
        await _posting(
            ledger, tx, "withdrawal reversed: B2C payout failed", [(K.MPESA_FLOAT, K.USER_WALLET, kes)]
        ),
        await _posting(
            ledger,
            tx,
            "withdrawal reversed: KES back to USD at the same quote",
            [(K.USER_WALLET, K.FX, kes), (K.FX, K.USER_WALLET, usd)],
        ),
        await _posting(
            ledger,
            tx,
            "withdrawal reversed: refund transfer to Deriv",
            [(K.USER_WALLET, K.DERIV_AGENT_FLOAT, usd)],
        ),
    ]


# --- floats -----------------------------------------------------------------------------


async def float_funding(ledger: LedgerRepository, kind: K, amount: Money, note: str) -> Posting:
    """Money the operator put into a float (or, negative, took out), against suspense."""
    float_id = await _account(ledger, kind, amount.currency)
    suspense_id = await _account(ledger, K.SUSPENSE, amount.currency)
    if amount.is_positive():
        lines = [debit(float_id, amount), credit(suspense_id, amount)]
    else:
        lines = [credit(float_id, -amount), debit(suspense_id, -amount)]
    return Posting.create(lines=lines, description=f"float funding: {note}"[:255])


# --- reconciliation ---------------------------------------------------------------------


async def unexplained_at_provider(
    ledger: LedgerRepository, kind: K, amount: Money, *, into_float: bool, note: str
) -> Posting:
    """Money a provider moved that no PenPay transaction explains (reconciliation), held in suspense
    until a person says whose it is: into the float (a payment received) Dr float / Cr SUSPENSE, out
    of it Dr SUSPENSE / Cr float."""
    float_id = await _account(ledger, kind, amount.currency)
    suspense_id = await _account(ledger, K.SUSPENSE, amount.currency)
    if into_float:
        lines = [debit(float_id, amount), credit(suspense_id, amount)]
    else:
        lines = [debit(suspense_id, amount), credit(float_id, amount)]
    return Posting.create(lines=lines, description=f"reconciliation suspense: {note}"[:255])

"""The postings of both sagas, in one place (what the consistency checker expects).

Deposit (per transaction):
  received     Dr MPESA_FLOAT KES  / Cr USER_WALLET KES          amount
  converted    Dr USER_WALLET KES                                amount
                                   / Cr FX KES                   conversion (amount at the reference rate)
                                   / Cr FX_SPREAD KES            spread (amount - conversion; no line when 0)
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
  converted    Dr USER_WALLET USD                                amount
                                   / Cr FX USD                   conversion
                                   / Cr FX_SPREAD USD            spread
               Dr FX KES           / Cr USER_WALLET KES          converted_amount
  payout       Dr USER_WALLET KES  / Cr MPESA_FLOAT KES          converted_amount  (reserved before sending)
  reversal     the mirrors of `payout` and `converted`, then a `transfer` back of amount USD

Paybill (C2B) deposit: the same postings as a deposit (received, converted, transfer, ...): the
  transaction starts with its M-Pesa payment confirmed. A paybill payment that is no one's deposit
  (unknown reference, validation skipped, values that disagree with what was validated):
  suspense     Dr MPESA_FLOAT KES  / Cr SUSPENSE KES              amount  (no transaction; the TransID
               in the description), until a person assigns or refunds it
  released     the mirror of `suspense`, when two people assigned it to a user (or, automatically,
               when its lost confirmation arrives late and matches an accepted validation): a
               deposit follows in the same database transaction
  refunded     Dr SUSPENSE KES     / Cr MPESA_FLOAT KES           amount  (no transaction), when
               two people had it reversed to its payer and M-Pesa confirmed the Reversal

Reconciliation (money a provider moved that no PenPay transaction explains):
  into a float Dr MPESA_FLOAT or DERIV_AGENT_FLOAT / Cr SUSPENSE   amount
  out of one   Dr SUSPENSE / Cr the float                          amount
  written off  (two people agreed it is nobody's in PenPay: a provider fee, the provider's error)
               into a float: Dr SUSPENSE / Cr RECONCILIATION_WRITE_OFF; out of one: the mirror

Float funding (`penpay float fund`, the opening funding of a new database; no transaction):
  into a float Dr MPESA_FLOAT or DERIV_AGENT_FLOAT / Cr CAPITAL     amount
  out of one   Dr CAPITAL / Cr the float                            amount
  reclassified Dr SUSPENSE / Cr CAPITAL (per currency, once), by migration 0022: funding booked
               before CAPITAL existed went to SUSPENSE; this moves it out so SUSPENSE holds only
               money nobody can explain

The FX account holds both legs of every conversion valued at the quote's reference (mid) rate, so
it says what position PenPay holds; what the customer's rate and the rounding down earned goes to
FX_SPREAD in the source currency (LockedRate.spread_split; a quote without a reference books no
spread line). Reversals mirror the same split, so a refund gives the spread back.
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


def _split(tx: Transaction) -> tuple[Money, Money]:
    """(conversion, spread) of the transaction's amount, in its currency."""
    if tx.locked_rate is None:
        return tx.amount, Money(0, tx.amount.currency)
    return tx.locked_rate.spread_split(tx.amount, _converted(tx))


async def _conversion(
    ledger: LedgerRepository, tx: Transaction, description: str, *, back: bool = False
) -> Posting:
    """The `converted` posting: the user's source amount in one line, split between FX (the
    conversion at the reference rate) and FX_SPREAD (no line when zero), and the converted amount
    out of FX to the user. `back`: its mirror (every line on the other side), for reversals."""
    conversion, spread = _split(tx)
    target = _converted(tx)
    # (account kind, amount, debited?) in the forward direction
    sides = [(K.USER_WALLET, tx.amount, True), (K.FX, conversion, False)]
    if spread.is_positive():
        sides.append((K.FX_SPREAD, spread, False))
    sides += [(K.FX, target, True), (K.USER_WALLET, target, False)]
    lines: list[PostingLine] = []
    for kind, amount, debited in sides:
        account = await _account(ledger, kind, amount.currency, tx)
        lines.append(debit(account, amount) if debited != back else credit(account, amount))
    return Posting.create(lines=lines, description=description, transaction_id=tx.id)


def _rate(tx: Transaction) -> str:
    rate = tx.locked_rate
    return (
        "" if rate is None else f" at {rate.rate.numerator}/{rate.rate.denominator} (quote {rate.quote_id})"
    )


# --- deposit ----------------------------------------------------------------------------


async def deposit_received(ledger: LedgerRepository, tx: Transaction) -> list[Posting]:
    kes = tx.amount
    return [
        await _posting(ledger, tx, "deposit: M-Pesa payment received", [(K.MPESA_FLOAT, K.USER_WALLET, kes)]),
        await _conversion(ledger, tx, f"deposit: KES to USD{_rate(tx)}"),
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
    kes = tx.amount
    return [
        await _conversion(ledger, tx, "deposit refunded: USD back to KES at the same quote", back=True),
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
    usd = tx.amount
    return [
        await _posting(
            ledger, tx, "withdrawal: Deriv account debited", [(K.DERIV_AGENT_FLOAT, K.USER_WALLET, usd)]
        ),
        await _conversion(ledger, tx, f"withdrawal: USD to KES{_rate(tx)}"),
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
        await _conversion(ledger, tx, "withdrawal reversed: KES back to USD at the same quote", back=True),
        await _posting(
            ledger,
            tx,
            "withdrawal reversed: refund transfer to Deriv",
            [(K.USER_WALLET, K.DERIV_AGENT_FLOAT, usd)],
        ),
    ]


# --- paybill ---------------------------------------------------------------------------


async def paybill_suspense(ledger: LedgerRepository, amount: Money, trans_id: str, why: str) -> Posting:
    """KES that arrived at the paybill for no deposit: held in suspense for a person."""
    float_id = await _account(ledger, K.MPESA_FLOAT, amount.currency)
    suspense_id = await _account(ledger, K.SUSPENSE, amount.currency)
    return Posting.create(
        lines=[debit(float_id, amount), credit(suspense_id, amount)],
        description=f"paybill payment {trans_id} held in suspense: {why}"[:255],
    )


async def paybill_suspense_released(
    ledger: LedgerRepository, amount: Money, trans_id: str, to: str
) -> Posting:
    """Two people gave a suspense payment to its owner: the mirror of `paybill_suspense`, after which
    the deposit books the payment as received like any other (no transaction here either)."""
    float_id = await _account(ledger, K.MPESA_FLOAT, amount.currency)
    suspense_id = await _account(ledger, K.SUSPENSE, amount.currency)
    return Posting.create(
        lines=[debit(suspense_id, amount), credit(float_id, amount)],
        description=f"paybill payment {trans_id} released from suspense to {to}"[:255],
    )


async def paybill_suspense_refunded(ledger: LedgerRepository, amount: Money, trans_id: str) -> Posting:
    """M-Pesa confirmed the Reversal of a suspense payment to its payer: the KES leaves the float,
    and the suspense that held it is cleared (booked only on the confirmation, never on the request)."""
    float_id = await _account(ledger, K.MPESA_FLOAT, amount.currency)
    suspense_id = await _account(ledger, K.SUSPENSE, amount.currency)
    return Posting.create(
        lines=[debit(suspense_id, amount), credit(float_id, amount)],
        description=f"paybill payment {trans_id} refunded to its payer by M-Pesa Reversal"[:255],
    )


# --- floats -----------------------------------------------------------------------------


async def float_funding(ledger: LedgerRepository, kind: K, amount: Money, note: str) -> Posting:
    """Money the operator put into a float (or, negative, took out), against the house's capital:
    it is explained money, so it never touches SUSPENSE."""
    float_id = await _account(ledger, kind, amount.currency)
    capital_id = await _account(ledger, K.CAPITAL, amount.currency)
    if amount.is_positive():
        lines = [debit(float_id, amount), credit(capital_id, amount)]
    else:
        lines = [credit(float_id, -amount), debit(capital_id, -amount)]
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


async def reconciliation_write_off(
    ledger: LedgerRepository, amount: Money, *, into_float: bool, note: str
) -> Posting:
    """Suspense of a reconciliation item (`unexplained_at_provider`) written off under four eyes:
    money that came into a float, Dr SUSPENSE / Cr RECONCILIATION_WRITE_OFF; money that left one,
    Dr RECONCILIATION_WRITE_OFF / Cr SUSPENSE. The float is not touched: the provider's books
    already agree with it."""
    suspense_id = await _account(ledger, K.SUSPENSE, amount.currency)
    write_off_id = await _account(ledger, K.RECONCILIATION_WRITE_OFF, amount.currency)
    if into_float:
        lines = [debit(suspense_id, amount), credit(write_off_id, amount)]
    else:
        lines = [debit(write_off_id, amount), credit(suspense_id, amount)]
    return Posting.create(lines=lines, description=f"reconciliation write-off: {note}"[:255])

"""Reading the simulators' books for the consistency checker (persistence.consistency).

The Deriv simulator's control API (`penpay sim deriv`, default http://127.0.0.1:8768):
  GET /books/transfers         every executed paymentagent_transfer / paymentagent_withdraw, with
                               the description PenPay wrote ("PenPay <operation id>", see
                               deriv_gateway.protocol.messages.reference)
  GET /accounts                to find the payment agent when its loginid is not given
  GET /accounts/{loginid}      the agent's balance now
  GET /books/ledger?loginid=   the agent's entries: opening balance = balance - their sum

The Daraja simulator's control API (`penpay sim mpesa`, under /__control__ on its own port):
  GET /__control__/books       STK charges by CheckoutRequestID, B2C payouts by
                               OriginatorConversationID, the utility account and its opening

Amounts come back as minor units (`amount_minor`), whole shillings (M-Pesa: x100 here), or
decimal strings (Deriv balances: parsed exactly with Decimal, never a float).
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp

from deriv_gateway.protocol.messages import OPERATION_ID_PATTERN, reference
from mpesa_adapter.client import originator_conversation_id_for
from persistence.consistency.books import (
    B2CPayout,
    DerivBooks,
    DerivBookTransfer,
    MpesaBooks,
    SimulatorBooks,
    StkCharge,
)

MPESA_CONTROL_PREFIX = "/__control__"
DEFAULT_REFERENCE_PREFIX = "PenPay"
# The withdrawal a paid B2C names by its OriginatorConversationID alone, read only for a payout no
# mpesa_disbursements row holds (persistence.consistency looks there first). The saga's form is
# "PENPAY-<hex>" (application/payments/saga.py, the same as mpesa_adapter.client's
# originator_conversation_id_for). "PP-<hex>" was its form until the two were made one; no running
# simulator holds it any more (the books live in the simulator's memory), and it is still read as
# that withdrawal's, so a payout under it counts as a second one (tests/consistency pay one so). A
# deposit's refund ("PENPAY-<hex>-R", application/review/service.py) is matched by its row only.
_PENPAY_OCID = re.compile(r"^(?:PENPAY|PP)-([0-9a-f]{32})$")


class BooksUnavailable(RuntimeError):
    """A simulator's control API could not be read."""


def minor_units(text: Any) -> int:
    """'50000.00' -> 5000000 (cents: USD and KES both have two decimals)."""
    try:
        number = Decimal(str(text).strip())
    except InvalidOperation:
        raise BooksUnavailable(f"not an amount: {text!r}") from None
    if not number.is_finite():
        raise BooksUnavailable(f"not an amount: {text!r}")
    scaled = number.scaleb(2)
    if scaled != scaled.to_integral_value():
        raise BooksUnavailable(f"amount {text!r} has more than cents")
    return int(scaled)


def operation_id_of(description: str, prefix: str = DEFAULT_REFERENCE_PREFIX) -> str | None:
    """The PenPay operation id a Deriv description carries, or None when it is not a reference."""
    head = f"{prefix} "
    if not description.startswith(head):
        return None
    operation_id = description[len(head) :]
    if not OPERATION_ID_PATTERN.fullmatch(operation_id):
        return None
    try:
        return operation_id if reference(operation_id, prefix) == description else None
    except ValueError:
        return None


def transaction_of_ocid(originator_conversation_id: str) -> str | None:
    match = _PENPAY_OCID.match(originator_conversation_id)
    if match is None:
        return None
    tx_id = uuid.UUID(hex=match.group(1))
    known_forms = {originator_conversation_id_for(tx_id), f"PP-{tx_id.hex}"}
    return str(tx_id) if originator_conversation_id in known_forms else None


async def _get(session: aiohttp.ClientSession, url: str, **params: str) -> Any:
    try:
        async with session.get(url, params=params or None) as response:
            if response.status != 200:
                raise BooksUnavailable(f"GET {url}: HTTP {response.status} {await response.text()}")
            return await response.json(content_type=None)
    except aiohttp.ClientError as error:
        raise BooksUnavailable(f"GET {url}: {error}") from error


async def fetch_deriv_books(
    session: aiohttp.ClientSession,
    control_url: str,
    *,
    agent_loginid: str | None = None,
    opening_balance_cents: int | None = None,
    reference_prefix: str = DEFAULT_REFERENCE_PREFIX,
) -> DerivBooks:
    base = control_url.rstrip("/")
    if agent_loginid is None:
        accounts = (await _get(session, f"{base}/accounts"))["accounts"]
        agents = [a["loginid"] for a in accounts if a.get("payment_agent") and not a.get("is_virtual")]
        if len(agents) != 1:
            raise BooksUnavailable(
                f"the Deriv simulator has {len(agents)} payment agents ({', '.join(agents)}); "
                "name one with --deriv-agent-loginid"
            )
        agent_loginid = str(agents[0])
    agent_loginid = agent_loginid.upper()
    account = await _get(session, f"{base}/accounts/{agent_loginid}")
    balance = minor_units(account["balance"])
    entries = (await _get(session, f"{base}/books/ledger", loginid=agent_loginid))["entries"]
    adjustments = sum(minor_units(e["amount"]) for e in entries if e.get("action_type") == "adjustment")
    if opening_balance_cents is None:
        # The seed's opening balance is the balance before the first entry.
        opening_balance_cents = balance - sum(minor_units(e["amount"]) for e in entries)
    raw = (await _get(session, f"{base}/books/transfers"))["transfers"]
    transfers = tuple(
        DerivBookTransfer(
            transfer_id=int(t["transfer_id"]),
            kind=str(t["kind"]),
            from_loginid=str(t["from_loginid"]),
            to_loginid=str(t["to_loginid"]),
            amount_cents=int(t["amount_minor"]),
            currency=str(t["currency"]),
            description=str(t.get("description") or ""),
            operation_id=operation_id_of(str(t.get("description") or ""), reference_prefix),
            debit_transaction_id=t.get("debit_transaction_id"),
        )
        for t in raw
        if agent_loginid in (str(t["from_loginid"]).upper(), str(t["to_loginid"]).upper())
    )
    return DerivBooks(
        agent_loginid=agent_loginid,
        currency=str(account.get("currency", "USD")),
        agent_balance_cents=balance,
        opening_balance_cents=opening_balance_cents,
        transfers=transfers,
        adjustments_cents=adjustments,
    )


def mpesa_control_base(url: str) -> str:
    """The simulator's base URL or its /__control__ URL -> the /__control__ URL."""
    base = url.rstrip("/")
    return base if base.endswith(MPESA_CONTROL_PREFIX) else base + MPESA_CONTROL_PREFIX


async def fetch_mpesa_books(session: aiohttp.ClientSession, control_url: str) -> MpesaBooks:
    books = await _get(session, f"{mpesa_control_base(control_url)}/books")
    if books.get("currency", "KES") != "KES":
        raise BooksUnavailable(f"M-Pesa books in {books.get('currency')}, expected KES")
    reversed_c2b = {
        str(r["original_trans_id"])
        for r in books.get("reversals", {}).get("transactions", [])
        if r.get("reversed")
    }
    stk = tuple(
        StkCharge(
            checkout_request_id=str(s["checkout_request_id"]),
            amount_cents=int(s["amount"]) * 100,
            phone=str(s["phone"]),
            charged=bool(s["charged"]),
            receipt=s.get("receipt"),
        )
        for s in books["stk"]["transactions"]
    ) + tuple(
        # A paybill collection is a charge too, under the MpesaRequest id of a paybill deposit; one
        # M-Pesa reversed (a suspense refund) was given back: it nets to nothing at M-Pesa.
        StkCharge(
            checkout_request_id=f"C2B-{c['trans_id']}",
            amount_cents=int(c["amount"]) * 100,
            phone=str(c["phone"]),
            charged=bool(c["collected"]) and str(c["trans_id"]) not in reversed_c2b,
            receipt=str(c["trans_id"]),
        )
        for c in books.get("c2b", {}).get("transactions", [])
    )
    b2c = tuple(
        B2CPayout(
            originator_conversation_id=str(b["originator_conversation_id"]),
            amount_cents=int(b["amount"]) * 100,
            phone=str(b["phone"]),
            paid=bool(b["paid"]),
            receipt=b.get("receipt"),
            transaction_id=transaction_of_ocid(str(b["originator_conversation_id"])),
        )
        for b in books["b2c"]["transactions"]
    )
    accounts = books["accounts"]
    return MpesaBooks(
        stk=stk,
        b2c=b2c,
        utility_cents=int(accounts["utility"]) * 100,
        opening_utility_cents=int(accounts["opening_utility"]) * 100,
    )


async def fetch_simulator_books(
    *,
    deriv_control_url: str | None = None,
    mpesa_control_url: str | None = None,
    deriv_agent_loginid: str | None = None,
    deriv_opening_balance_cents: int | None = None,
    reference_prefix: str = DEFAULT_REFERENCE_PREFIX,
    http_timeout: float = 30.0,
) -> SimulatorBooks | None:
    """Both books (or the one whose URL is given); None when neither URL is."""
    if deriv_control_url is None and mpesa_control_url is None:
        return None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=http_timeout)) as session:
        deriv = (
            await fetch_deriv_books(
                session,
                deriv_control_url,
                agent_loginid=deriv_agent_loginid,
                opening_balance_cents=deriv_opening_balance_cents,
                reference_prefix=reference_prefix,
            )
            if deriv_control_url
            else None
        )
        mpesa = await fetch_mpesa_books(session, mpesa_control_url) if mpesa_control_url else None
    return SimulatorBooks(deriv=deriv, mpesa=mpesa)


__all__ = [
    "BooksUnavailable",
    "fetch_deriv_books",
    "fetch_mpesa_books",
    "fetch_simulator_books",
    "minor_units",
    "operation_id_of",
    "transaction_of_ocid",
]

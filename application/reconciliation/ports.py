"""What reconciliation reads from the providers and keeps in the database (implemented by adapters)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from application.reconciliation.rules import Amount, ItemClass

MPESA_C2B = "mpesa_c2b"  # Pull Transactions
MPESA_B2C = "mpesa_b2c"  # Transaction Status
DERIV_STATEMENT = "deriv_statement"  # the agent's statement (v3)
MPESA_FLOAT = "mpesa_float"  # Account Balance
DERIV_FLOAT = "deriv_float"  # the agent's balance
SOURCES = (MPESA_C2B, MPESA_B2C, DERIV_STATEMENT, MPESA_FLOAT, DERIV_FLOAT)


class ProviderReadFailed(Exception):
    """A provider's read failed (a pull answered with HTTP 200 and 1001 included): the run fails."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


@dataclass(frozen=True)
class ProviderRecord:
    ref: str  # M-Pesa receipt, Deriv transaction id
    amount: Amount  # unsigned
    credit: bool  # money into PenPay's account at the provider
    occurred_at: datetime
    reference: str  # bill reference / statement description
    transaction_hint: str | None = None  # a PenPay transaction id the record names, if any
    party: str = ""  # the payer as the provider shows them (an M-Pesa MSISDN, maybe masked)
    account: str = ""  # PenPay's account at the provider the record is of (the paybill shortcode)
    # the provider's status of the record: "complete" moved money; Deriv's REST wallet also lists
    # operations that have not moved it yet (pending, processing) or never will (failed, rejected,
    # cancelled); a "reverted" one moved it and its move back is a record of its own
    status: str = "complete"
    # the provider's two views of this record disagree (Deriv's v3 statement and REST wallet): what
    # the other view shows; such a record is never matched
    conflict: str = ""


@dataclass(frozen=True)
class Evidence:
    transaction_id: str
    provider_ref: str | None  # receipt, Deriv transaction id, OriginatorConversationID
    amount: Amount
    status: str
    created_at: datetime
    # Deriv: "transfer" (agent -> client, a debit of the agent) or "withdrawal" (client -> agent)
    kind: str = ""
    # the M-Pesa party PenPay holds for it (the number an STK push went to, a paybill payer's masked
    # MSISDN, a payout's recipient): only its visible digits are ever compared, never used as a key
    party: str = ""


@dataclass(frozen=True)
class PaybillHeld:
    """A paybill payment PenPay's C2B endpoints know of (a c2b_payments row), by its TransID."""

    trans_id: str
    amount: Amount
    status: str  # application.payments.paybill.Status
    msisdn_shown: str = ""  # the payer as the confirmation showed them (masked)


@dataclass(frozen=True)
class Payout:
    """A B2C payout PenPay holds as CONFIRMED (its MpesaDisbursement), with M-Pesa's own word on it as
    it arrived: the result callback (or the Transaction Status answer that confirmed it)."""

    transaction_id: str
    originator_conversation_id: str
    receipt: str | None
    amount: Amount
    created_at: datetime
    phone: str
    raw_result: str


@dataclass(frozen=True)
class PayoutCheck:
    """Transaction Status about a confirmed payout's receipt: True M-Pesa confirms it (our payout, our
    amount), False it denies it (no such receipt, another payout or amount), None no answer yet.
    `party_differs`: M-Pesa has the receipt but shows another payee than ours (not "missing": the
    money left, to someone else, and paying it again would pay twice)."""

    confirmed: bool | None
    detail: str
    party_differs: bool = False


@dataclass(frozen=True)
class Item:
    key: str
    source: str
    item_class: ItemClass
    detail: str
    provider_ref: str | None = None
    transaction_id: str | None = None
    provider_amount: Amount | None = None
    penpay_amount: Amount | None = None
    occurred_at: datetime | None = None
    credit: bool = True  # direction of a provider record (suspense posting)
    float_kind: str | None = None  # the float a suspense posting books against
    # a C2B payment booked to suspense: what the paybill suspense row is made of
    reference: str = ""
    party: str = ""
    account: str = ""


class ProviderReads(Protocol):
    async def pulled_c2b(self, start: datetime, end: datetime) -> list[ProviderRecord]: ...

    async def deriv_statement(self, start: datetime, end: datetime) -> list[ProviderRecord]: ...

    async def ask_b2c_status(self, originator_conversation_id: str) -> None: ...

    async def mpesa_balance(self) -> dict[str, Amount]:
        """Each shortcode's balance (the float is held across the collecting and the B2C shortcodes)."""
        ...

    def payout_record(self, payout: Payout) -> ProviderRecord | None:
        """M-Pesa's record of a payout as its result callback carried it (None: it carried none)."""
        ...

    async def check_payouts(self, payouts: list[Payout]) -> dict[str, PayoutCheck]:
        """Transaction Status about each payout's receipt, asked once each, answers awaited together
        (by OriginatorConversationID)."""
        ...

    async def deriv_balance(self) -> Amount: ...


class ReconciliationStore(Protocol):
    async def start_run(self, trigger: str, start: datetime, end: datetime, now: datetime) -> str: ...

    async def finish_run(
        self,
        run_id: str,
        status: str,
        counts: dict[str, int],
        unexplained: int,
        error: str | None,
        now: datetime,
    ) -> None: ...

    async def cursor(self, source: str) -> datetime | None: ...

    async def advance_cursor(self, source: str, to: datetime, now: datetime) -> None: ...

    async def stk_evidence(self, start: datetime, end: datetime) -> list[Evidence]: ...

    async def stk_evidence_by_receipt(self, receipts: list[str]) -> dict[str, Evidence]: ...

    async def deriv_evidence(self, start: datetime, end: datetime) -> list[Evidence]: ...

    async def deriv_evidence_by_ref(self, refs: list[str]) -> dict[str, Evidence]: ...

    async def deriv_evidence_of(self, transaction_ids: list[str]) -> list[Evidence]: ...

    async def paybill_payments(self, trans_ids: list[str]) -> dict[str, PaybillHeld]: ...

    async def known_transactions(self, ids: list[str]) -> set[str]: ...

    async def unconfirmed_b2c(self, start: datetime, end: datetime) -> list[Evidence]: ...

    async def confirmed_payouts(self, start: datetime, end: datetime) -> list[Payout]:
        """The window's confirmed payouts, and any confirmed one whose Transaction Status check an
        earlier run is still awaiting (whatever its window)."""
        ...

    async def item_states(self, keys: list[str]) -> dict[str, tuple[str, str | None]]:
        """(item class, provider_ref) of the items recorded under these keys."""
        ...

    async def float_movement(
        self,
        transaction_ids: list[str],
        float_kind: str,
        *,
        into_float_only: bool = False,
        out_of_float_only: bool = False,
    ) -> dict[str, Amount]:
        """Net movement of the float per transaction; `into_float_only`: only what came in (debits);
        `out_of_float_only`: only what went out (credits, counted positive)."""
        ...

    async def float_balance(self, float_kind: str, currency: str) -> Amount: ...

    async def record_item(self, run_id: str, item: Item, now: datetime) -> None: ...

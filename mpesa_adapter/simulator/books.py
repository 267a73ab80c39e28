"""What the simulated M-Pesa really charged and paid, in integer shillings. Pure logic.

A test (or an operator) compares PenPay's ledger with these books: STK successes per phone and per
CheckoutRequestID, B2C payouts per OriginatorConversationID, and the organisation's account balances.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass
class StkRecord:
    checkout_request_id: str
    merchant_request_id: str
    shortcode: str
    transaction_type: str
    party_b: str
    phone: str
    amount: int
    account_reference: str
    callback_url: str
    requested_at: datetime
    receipt_candidate: str
    status: str = "pending"  # pending | completed
    result_code: int | str | None = None
    receipt: str | None = None
    charged: bool = False
    completed_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("receipt_candidate")
        out["requested_at"] = self.requested_at.isoformat()
        out["completed_at"] = self.completed_at.isoformat() if self.completed_at else None
        return out


@dataclass
class B2CRecord:
    originator_conversation_id: str
    conversation_id: str
    transaction_id: str
    command_id: str
    party_a: str
    phone: str
    amount: int
    result_url: str
    queue_timeout_url: str
    requested_at: datetime
    recipient_name: str
    status: str = "pending"  # pending | completed
    result_code: int | str | None = None
    paid: bool = False
    queue_timed_out: bool = False
    completed_at: datetime | None = None

    @property
    def receipt(self) -> str | None:
        return self.transaction_id if self.paid else None

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out["receipt"] = self.receipt
        out["requested_at"] = self.requested_at.isoformat()
        out["completed_at"] = self.completed_at.isoformat() if self.completed_at else None
        return out


@dataclass
class C2BRecord:
    """A customer's payment to a paybill (C2B): what Pull Transactions lists once it is completed."""

    trans_id: str
    shortcode: str
    phone: str
    amount: int
    bill_ref: str
    payer_name: str
    requested_at: datetime
    status: str = "pending"  # pending | completed | declined
    result_code: str | None = None
    collected: bool = False
    completed_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out["requested_at"] = self.requested_at.isoformat()
        out["completed_at"] = self.completed_at.isoformat() if self.completed_at else None
        return out


@dataclass
class ReversalRecord:
    """A Reversal request: the C2B payment (TransID) it returns to its payer."""

    originator_conversation_id: str
    conversation_id: str
    transaction_id: str  # the reversal's own receipt
    original_trans_id: str
    shortcode: str
    amount: int
    result_url: str
    queue_timeout_url: str
    requested_at: datetime
    status: str = "pending"  # pending | completed
    result_code: int | str | None = None
    reversed: bool = False
    completed_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        out = asdict(self)
        out["requested_at"] = self.requested_at.isoformat()
        out["completed_at"] = self.completed_at.isoformat() if self.completed_at else None
        return out


class Books:
    """The organisation's money and the records that moved it. Each shortcode has its own Utility
    Account, as at Safaricom: a collection (STK push, paybill) lands on the shortcode paid, a payout
    leaves the B2C shortcode it names as PartyA. The opening utility balance is the `home` (B2C)
    shortcode's, where an operator funds payouts; the other shortcodes open empty."""

    def __init__(self, utility: int, working: int, home: str = "") -> None:
        self.opening_utility = utility
        self.working = working
        self.home = home
        self.reset()

    def reset(self, utility: int | None = None, working: int | None = None, home: str | None = None) -> None:
        if utility is not None:
            self.opening_utility = utility
        if working is not None:
            self.working = working
        if home is not None:
            self.home = home
        self.utilities: dict[str, int] = {self.home: self.opening_utility}
        self.stk: dict[str, StkRecord] = {}
        self.b2c: dict[str, B2CRecord] = {}
        self.c2b: dict[str, C2BRecord] = {}
        self.reversals: dict[str, ReversalRecord] = {}  # by OriginatorConversationID
        self.pull_registrations: dict[str, str] = {}  # shortcode -> CallBackURL

    @property
    def utility(self) -> int:
        """All the shortcodes' Utility Accounts together."""
        return sum(self.utilities.values())

    def utility_of(self, shortcode: str) -> int:
        return self.utilities.get(shortcode, 0)

    def _move(self, shortcode: str, amount: int) -> None:
        self.utilities[shortcode] = self.utility_of(shortcode) + amount

    # --- STK ---------------------------------------------------------------------------------------
    def add_stk(self, record: StkRecord) -> None:
        self.stk[record.checkout_request_id] = record

    def pending_push_for(self, phone: str) -> bool:
        return any(r.status == "pending" and r.phone == phone for r in self.stk.values())

    def charge(self, record: StkRecord, at: datetime) -> None:
        record.status, record.result_code, record.completed_at = "completed", 0, at
        record.receipt, record.charged = record.receipt_candidate, True
        self._move(record.shortcode, record.amount)

    def decline_stk(self, record: StkRecord, code: int | str, at: datetime) -> None:
        record.status, record.result_code, record.completed_at = "completed", code, at

    def charged_on(self, phone: str, day: datetime) -> int:
        return sum(
            r.amount
            for r in self.stk.values()
            if r.charged and r.phone == phone and r.completed_at and r.completed_at.date() == day.date()
        )

    # --- B2C ---------------------------------------------------------------------------------------
    def add_b2c(self, record: B2CRecord) -> None:
        self.b2c[record.originator_conversation_id] = record

    def pay(self, record: B2CRecord, at: datetime) -> None:
        record.status, record.result_code, record.completed_at, record.paid = "completed", 0, at, True
        self._move(record.party_a, -record.amount)

    def decline_b2c(self, record: B2CRecord, code: int | str, at: datetime) -> None:
        record.status, record.result_code, record.completed_at = "completed", code, at

    def paid_on(self, phone: str, day: datetime) -> int:
        return sum(
            r.amount
            for r in self.b2c.values()
            if r.paid and r.phone == phone and r.completed_at and r.completed_at.date() == day.date()
        )

    # --- C2B (paybill) ------------------------------------------------------------------------------
    def add_c2b(self, record: C2BRecord) -> None:
        self.c2b[record.trans_id] = record

    def collect(self, record: C2BRecord, at: datetime) -> None:
        record.status, record.result_code, record.completed_at, record.collected = "completed", "0", at, True
        self._move(record.shortcode, record.amount)

    def decline_c2b(self, record: C2BRecord, code: str, at: datetime) -> None:
        record.status, record.result_code, record.completed_at = "declined", code, at

    # --- Reversal (of a C2B payment) ------------------------------------------------------------------
    def add_reversal(self, record: ReversalRecord) -> None:
        self.reversals[record.originator_conversation_id] = record

    def reversal_of(self, trans_id: str) -> ReversalRecord | None:
        """The reversal that returned (or is returning) this payment, if any."""
        for r in self.reversals.values():
            if r.original_trans_id == trans_id and (r.reversed or r.status == "pending"):
                return r
        return None

    def reverse(self, record: ReversalRecord, at: datetime) -> None:
        record.status, record.result_code, record.completed_at, record.reversed = "completed", 0, at, True
        self._move(record.shortcode, -record.amount)

    def decline_reversal(self, record: ReversalRecord, code: int | str, at: datetime) -> None:
        record.status, record.result_code, record.completed_at = "completed", code, at

    # --- lookups -----------------------------------------------------------------------------------
    def by_transaction_id(self, transaction_id: str) -> StkRecord | B2CRecord | ReversalRecord | None:
        for r in self.reversals.values():
            if r.transaction_id == transaction_id:
                return r
        for b in self.b2c.values():
            if b.transaction_id == transaction_id:
                return b
        for s in self.stk.values():
            if s.receipt == transaction_id:
                return s
        return None

    def c2b_collected(self) -> list[C2BRecord]:
        return [r for r in self.c2b.values() if r.collected]

    def phone(self, phone: str) -> dict[str, Any]:
        return {
            "phone": phone,
            # Which of the organisation's accounts collected from and paid this phone.
            "charged_by": sorted({r.shortcode for r in self.stk.values() if r.charged and r.phone == phone}),
            "paid_from": sorted({r.party_a for r in self.b2c.values() if r.paid and r.phone == phone}),
            "charged": sum(r.amount for r in self.stk.values() if r.charged and r.phone == phone),
            "paid": sum(r.amount for r in self.b2c.values() if r.paid and r.phone == phone),
            "stk": [r.public() for r in self.stk.values() if r.phone == phone],
            "b2c": [r.public() for r in self.b2c.values() if r.phone == phone],
        }

    def snapshot(self) -> dict[str, Any]:
        charged: dict[str, int] = defaultdict(int)
        paid: dict[str, int] = defaultdict(int)
        for s in self.stk.values():
            if s.charged:
                charged[s.phone] += s.amount
        for b in self.b2c.values():
            if b.paid:
                paid[b.phone] += b.amount
        return {
            "currency": "KES",
            "stk": {
                "total_charged": sum(charged.values()),
                "charged_by_phone": dict(charged),
                "transactions": [r.public() for r in self.stk.values()],
            },
            "b2c": {
                "total_paid": sum(paid.values()),
                "paid_by_phone": dict(paid),
                "transactions": [r.public() for r in self.b2c.values()],
            },
            "c2b": {
                "total_collected": sum(r.amount for r in self.c2b_collected()),
                "transactions": [r.public() for r in self.c2b.values()],
            },
            "reversals": {
                "total_reversed": sum(r.amount for r in self.reversals.values() if r.reversed),
                "transactions": [r.public() for r in self.reversals.values()],
            },
            "accounts": {
                "utility": self.utility,
                "utility_by_shortcode": dict(self.utilities),
                "working": self.working,
                "opening_utility": self.opening_utility,
            },
        }

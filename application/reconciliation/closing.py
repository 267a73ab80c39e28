"""Closing a reconciliation item queued for review where no money moves in PenPay.

An operator has found why a difference exists outside PenPay's books (a provider fee, a duplicate
settled at the provider under a ticket): they close the item with that explanation. One person
suffices because nothing is booked; an item whose money PenPay holds in SUSPENSE is refused, as
releasing or writing that off is a booking (a four-eyes action, not this one). The item keeps its
history and becomes RESOLVED; a later run leaves it so unless the provider's record changed
(`resolution_stands`), in which case it is queued again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from application.reconciliation.rules import Amount
from domain.shared.errors import DomainError, InvalidValue

OPEN = "OPEN"
RESOLVED = "RESOLVED"
MAX_REASON = 255


class ItemNotFound(DomainError):
    reason = "RECONCILIATION_ITEM_NOT_FOUND"


class ItemNotOpen(DomainError):
    """Not queued for review (matched, or closed already)."""

    reason = "RECONCILIATION_ITEM_NOT_OPEN"


class ItemHoldsSuspense(DomainError):
    """Money PenPay holds in SUSPENSE for the item: closing it takes a booking, not a note."""

    reason = "RECONCILIATION_ITEM_HOLDS_SUSPENSE"


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """What reconciliation last saw of the provider's record for an item."""

    item_class: str
    provider_ref: str | None
    provider_amount: Amount | None


@dataclass(frozen=True, slots=True)
class StoredItem:
    item_key: str
    review_status: str
    holds_suspense: bool  # its SUSPENSE posting booked and not written off
    record: ProviderRecord
    write_off_proposed_by: str | None = None


def reason_of(text: str) -> str:
    why = text.strip()
    if not why:
        raise InvalidValue("say why the item is closed (e.g. provider fee, ticket 123)", field="reason")
    if len(why) > MAX_REASON:
        raise InvalidValue(f"reason: at most {MAX_REASON} characters", field="reason")
    return why


def check_closable(item: StoredItem | None) -> StoredItem:
    if item is None:
        raise ItemNotFound("no such reconciliation item")
    if item.review_status != OPEN:
        raise ItemNotOpen(f"the item is not open for review ({item.review_status})")
    if item.holds_suspense:
        raise ItemHoldsSuspense("its money is held in SUSPENSE; closing it needs a booking")
    return item


def resolution_stands(closed: ProviderRecord, seen: ProviderRecord) -> bool:
    """A resolved item stays resolved while the provider shows the same record: same class, same
    reference, same amount. Anything else is new information an operator has not explained."""
    return closed == seen


class ItemClosings(Protocol):
    async def close(self, item_key: str, *, staff: str, reason: str) -> StoredItem: ...


class ReconciliationItemReview:
    def __init__(self, closings: ItemClosings) -> None:
        self._closings = closings

    async def close(self, *, staff: str, item_key: str, reason: str) -> StoredItem:
        why = reason_of(reason)
        if not item_key.strip():
            raise InvalidValue("item_key is required", field="item_key")
        return await self._closings.close(item_key.strip(), staff=staff, reason=why)

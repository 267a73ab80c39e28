"""The payment-agent wallet's transactions (`GET /wallet/v1/transactions/payment_agent`), decoded.

Sans-I/O: an answer in, plain records and the next page's link out. What the anchors give (deriv-rest
README §5.2 and §11) and how each conflict between their sources is read:
- `data` is `{start_date_time, end_date_time, transactions: [...]}` (newest first); a bare list of
  items is taken too;
- an item is `{request_id, transaction_id, timestamp, category, channel, metadata: {transaction_status,
  transaction_gross_amount, transaction_net_amount, transaction_currency, source_client_id?,
  destination_client_id?}}` (a third-party client's types): amounts are decimal strings or numbers,
  the timestamp ISO 8601 or epoch seconds (milliseconds when it is that large), `transaction_id` may be
  null while an operation is pending, and a missing status reads `complete` (the June generation has
  no pending operations);
- pages are cursor-based: `links.next` is followed verbatim, `null` means no further page, and
  `links` may be missing altogether (seen live): the caller then pages by time (see `next_link`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode, urlsplit

from deriv_gateway.protocol import errors

PA_TRANSACTIONS = "/wallet/v1/transactions/payment_agent"
PER_PAGE_MIN, PER_PAGE_MAX = 100, 1000
# statuses of an item whose money moved (a reverted one moved, and its move back is an item too)
MOVED = ("complete", "reverted")
DIGITS = {"USD": 2, "EUR": 2, "GBP": 2, "AUD": 2, "BTC": 8, "ETH": 8, "LTC": 8}


@dataclass(frozen=True, slots=True)
class WalletTransaction:
    transaction_id: int | None
    request_id: str
    category: str  # deposit (into the wallet) | withdrawal (out of it)
    channel: str
    status: str  # pending, processing, complete, failed, cancelled, reverted, ...
    amount_minor: int  # unsigned
    currency: str
    time: int  # Unix seconds
    counterparty: str  # source_client_id of a deposit, destination_client_id of a withdrawal

    @property
    def credit(self) -> bool:
        return self.category == "deposit"


@dataclass(frozen=True, slots=True)
class WalletPage:
    transactions: tuple[WalletTransaction, ...]
    next_link: str | None  # links.next as Deriv gave it (None: no further page)
    links_present: bool


def first_query(date_from: int, date_to: int, per_page: int) -> dict[str, str]:
    """The range in epoch seconds (0: open on that side)."""
    query = {"per_page": str(min(max(per_page, PER_PAGE_MIN), PER_PAGE_MAX))}
    if date_from > 0:
        query["start_date_time"] = str(date_from)
    if date_to > 0:
        query["end_date_time"] = str(date_to)
    return query


def older_than(date_from: int, oldest: int) -> str:
    """The next page when Deriv left `links` out: the same range up to the oldest item seen, as many
    as a page holds (newest first, so items sharing that second come again; the caller drops those it
    holds already, and a full page of nothing new cannot be paged past: the read fails)."""
    return f"{PA_TRANSACTIONS}?{urlencode(first_query(date_from, oldest, PER_PAGE_MAX))}"


def link_path(link: str, base_url: str) -> str:
    """A `links.next` (absolute or relative) as the path + query to GET on `base_url`. A link to
    another host or another resource is refused: the agent's token goes nowhere else."""
    parts = urlsplit(link)
    base = urlsplit(base_url)
    if parts.scheme or parts.netloc:
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc):
            raise errors.UnexpectedReply("links.next points at another host", msg_type="statement")
    path = parts.path
    prefix = base.path.rstrip("/")
    if prefix and path.startswith(prefix + "/"):
        path = path[len(prefix) :]
    if path != PA_TRANSACTIONS:
        raise errors.UnexpectedReply("links.next names another resource", msg_type="statement")
    return f"{path}?{parts.query}" if parts.query else path


def parse_page(data: Any, answer: Any) -> WalletPage:
    items = data.get("transactions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise errors.UnexpectedReply("wallet transactions without a list", msg_type="statement")
    links = answer.get("links") if isinstance(answer, dict) else None
    present = isinstance(links, dict)
    nxt = links.get("next") if isinstance(links, dict) else None
    return WalletPage(
        tuple(_item(i) for i in items if isinstance(i, dict)),
        nxt if isinstance(nxt, str) and nxt else None,
        present,
    )


def _item(item: dict[str, Any]) -> WalletTransaction:
    meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    currency = str(meta.get("transaction_currency") or item.get("currency") or "USD")
    raw = meta.get("transaction_net_amount")
    if raw is None:
        raw = meta.get("transaction_gross_amount", item.get("amount"))
    try:
        amount = Decimal(str(raw))
    except InvalidOperation:
        raise errors.UnexpectedReply(f"wallet transaction amount {raw!r}", msg_type="statement") from None
    if not amount.is_finite():
        raise errors.UnexpectedReply(f"wallet transaction amount {raw!r}", msg_type="statement")
    category = str(item.get("category") or ("deposit" if amount > 0 else "withdrawal"))
    minor = abs(amount).scaleb(DIGITS.get(currency, 2))
    if minor != minor.to_integral_value():
        raise errors.UnexpectedReply("wallet transaction amount below a minor unit", msg_type="statement")
    side = "source_client_id" if category == "deposit" else "destination_client_id"
    counterparty = meta.get(side)
    return WalletTransaction(
        transaction_id=_int(item.get("transaction_id")),
        request_id=str(item.get("request_id") or ""),
        category=category,
        channel=str(item.get("channel") or ""),
        status=str(meta.get("transaction_status") or item.get("status") or "complete").lower(),
        amount_minor=int(minor),
        currency=currency,
        time=_time(item.get("timestamp")),
        counterparty=str(counterparty or ""),
    )


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _time(value: Any) -> int:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        seconds = float(value)
        return int(seconds / 1000 if seconds > 1e11 else seconds)
    text = str(value or "").strip()
    if text.isdigit():
        return _time(int(text))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.UnexpectedReply(f"wallet transaction timestamp {text!r}", msg_type="statement") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())

"""ListStatement over Deriv's REST API: one page of the payment-agent wallet's transactions.

Read-only, on the agent's token. The first page asks for the range; each next one follows Deriv's
`links.next` verbatim (checked to stay on Deriv's host and this resource). When Deriv leaves `links`
out of a full page, the next page is the same range up to the oldest item seen (the caller drops the
items it already holds)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from deriv_gateway.rest.wallet_transactions import (
    PA_TRANSACTIONS,
    PER_PAGE_MIN,
    WalletTransaction,
    first_query,
    link_path,
    older_than,
    parse_page,
)
from deriv_gateway.transport_rest import RestTransport, agent_token_in_use


async def rest_statement_page(
    rest: RestTransport, *, date_from: int, date_to: int, page_token: str, limit: int
) -> tuple[list[WalletTransaction], str]:
    """(the page's transactions, the next page's token or "")."""
    rest.gateway.term.token()  # refuses on a standby: only the leader reads Deriv
    per_page = max(limit, PER_PAGE_MIN)
    client = rest.client
    if page_token:
        path, query = link_path(page_token, client.base_url), None
    else:
        path, query = PA_TRANSACTIONS, first_query(date_from, date_to, per_page)
    async with agent_token_in_use():
        data, answer = await client.call("GET", path, rest._agent_token, call="statement", query=query)
    page = parse_page(data, answer)
    if page.links_present:
        return list(page.transactions), page.next_link or ""
    asked = int(dict(_query(path, query)).get("per_page", per_page))
    if page.transactions and len(page.transactions) >= asked:
        oldest = min(t.time for t in page.transactions)
        return list(page.transactions), older_than(date_from, oldest)
    return list(page.transactions), ""


def _query(path: str, query: dict[str, str] | None) -> list[tuple[str, str]]:
    return list(query.items()) if query is not None else parse_qsl(urlsplit(path).query)

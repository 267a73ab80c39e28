"""The agent's own connection as the gateway's parts need it: ready, its currency, its digits."""

from __future__ import annotations

from deriv_gateway.connection import DerivConnection
from deriv_gateway.protocol import errors
from deriv_gateway.protocol.messages import currency_digits
from deriv_gateway.request_rules import check_agent_currency


async def wait_agent_ready(agent: DerivConnection, wait: float) -> None:
    try:
        await agent.wait_ready(wait)
    except TimeoutError:
        raise errors.NotConnected("the agent connection to Deriv is down") from None


def agent_digits(agent: DerivConnection, currency: str) -> int:
    return currency_digits(agent.website_status, currency)


def check_agent_account_currency(agent: DerivConnection, currency: str) -> None:
    """After `wait_agent_ready`: the agent's account currency is known from its authorization."""
    check_agent_currency(currency, agent.authorization.get("currency"))

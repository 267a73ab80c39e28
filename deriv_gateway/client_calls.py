"""Calls on a client's own token, each on a short-lived connection of its own: authorize, the
account's settings, and the emailed code a payment-agent withdrawal needs."""

from __future__ import annotations

from typing import Any

from deriv_gateway.agent_account import agent_digits, check_agent_account_currency, wait_agent_ready
from deriv_gateway.config import GatewayConfig
from deriv_gateway.connection import ClientSession, DerivConnection
from deriv_gateway.protocol import errors
from deriv_gateway.request_rules import check_amount, check_client_token
from deriv_gateway.term import LeadershipTerm


class ClientCalls:
    def __init__(self, config: GatewayConfig, agent: DerivConnection, term: LeadershipTerm) -> None:
        self.config = config
        self.agent = agent
        self.term = term

    def session(self, token: str) -> ClientSession:
        check_client_token(token)
        return ClientSession(
            self.config.ws_url,
            self.config.app_id,
            token,
            timeout=self.config.client_timeout,
            compression=self.config.compression,
            observer=self.config.frame_observer,
        )

    async def authorize(self, token: str) -> dict[str, Any]:
        self.term.token()
        async with self.session(token) as session:
            return session.authorization

    async def get_settings(self, token: str) -> tuple[str, dict[str, Any]]:
        self.term.token()
        async with self.session(token) as session:
            message = await session.request("get_settings")
            return session.loginid, message.get("get_settings") or {}

    async def request_withdrawal_code(
        self, token: str, amount_cents: int | None = None, currency: str | None = None
    ) -> str:
        check_client_token(token)
        if amount_cents is not None or currency is not None:
            check_amount(amount_cents or 0, currency or "")
        self.term.token()
        await wait_agent_ready(self.agent, self.config.request_timeout)
        if currency is not None:
            check_agent_account_currency(self.agent, currency)
        async with self.session(token) as session:
            email = session.authorization.get("email")
            if not email:
                raise errors.DerivError("the account has no email address", code="InvalidEmail")
            params: dict[str, Any] = {"pa_loginid": self.agent.loginid}
            if amount_cents and currency:
                params["pa_amount"] = float(amount_cents) / 10 ** agent_digits(self.agent, currency)
                params["pa_currency"] = currency
            await session.request(
                "verify_email", {"type": "paymentagent_withdraw", "url_parameters": params}, value=email
            )
            return session.loginid

"""A simulator of Africa's Talking's messaging API, with a mailbox the demo and tests read.

    POST /version1/messaging          form username, to, message[, from]; header apiKey
    GET  /__control__/messages        ?to=+2547...&limit=20: what was sent, newest first
    POST /__control__/refuse          {"status_code": 405}: refuse the next message that way

Answers follow Africa's Talking's documented shapes (sms_adapter/africastalking.py): 201 with
SMSMessageData.Recipients[] (statusCode 101 "Success", messageId, cost), 401 plain text for a wrong
username or key, 400 plain text for a missing field, statusCode 403 InvalidPhoneNumber per bad
recipient. With `delivery_report_url` set it POSTs a delivery report per accepted message, form
encoded as Africa's Talking does (id, status=Success, phoneNumber, networkCode, retryCount).
The simulator logs masked phones only; bodies stay in the mailbox (it is a test double).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from domain.shared.clock import Clock, SystemClock
from security.masking import mask_phone
from sms_adapter.africastalking import MESSAGING_PATH

log = structlog.get_logger("penpay.sim.sms")

DEFAULT_USERNAME = "sandbox"
DEFAULT_API_KEY = "atsk-sim-penpay-0123456789abcdef"  # the simulator's own, public, value
CONTROL_PREFIX = "/__control__"
COST = "KES 0.8000"
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
# Recipient refusals by statusCode, as Africa's Talking names them.
REFUSALS = {
    401: "RiskHold",
    402: "InvalidSenderId",
    403: "InvalidPhoneNumber",
    404: "UnsupportedNumberType",
    405: "InsufficientBalance",
    406: "UserInBlacklist",
    407: "CouldNotRoute",
    409: "DoNotDisturbRejection",
    500: "InternalServerError",
    501: "GatewayError",
    502: "RejectedByGateway",
}


@dataclass(frozen=True, slots=True)
class SimulatedSms:
    message_id: str
    to: str
    sender: str
    body: str
    sent_at: str

    def as_json(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class SmsSimulator:
    host: str = "127.0.0.1"
    port: int = 0
    username: str = DEFAULT_USERNAME
    api_key: str = DEFAULT_API_KEY
    delivery_report_url: str | None = None
    clock: Clock = field(default_factory=SystemClock)
    mailbox: list[SimulatedSms] = field(default_factory=list)
    _refuse_next: int | None = None
    _runner: web.AppRunner | None = None
    _reports: set[asyncio.Task[None]] = field(default_factory=set)
    bound_port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.bound_port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(MESSAGING_PATH, self._messaging)
        app.router.add_get(f"{CONTROL_PREFIX}/messages", self._messages)
        app.router.add_post(f"{CONTROL_PREFIX}/refuse", self._refuse)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        self.bound_port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        log.info("sim.sms.listening", url=self.base_url)

    async def stop(self) -> None:
        for task in list(self._reports):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SmsSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def sent_to(self, to: str) -> list[SimulatedSms]:
        """Messages to `to`, newest first."""
        return [m for m in reversed(self.mailbox) if m.to == to]

    # --- the messaging API --------------------------------------------------------------

    async def _messaging(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.headers.get("apiKey") != self.api_key or form.get("username") != self.username:
            return web.Response(status=401, text="The supplied authentication is invalid")
        for name in ("to", "message"):
            if not str(form.get(name, "")).strip():
                return web.Response(status=400, text=f"Request is missing required form field '{name}'")
        sender, body = str(form.get("from", "")), str(form["message"])
        recipients = [r.strip() for r in str(form["to"]).split(",") if r.strip()]
        entries = [self._one(to, sender, body) for to in recipients]
        sent = sum(1 for e in entries if e["statusCode"] == 101)
        total = f"KES {0.8 * sent:.4f}"
        message = f"Sent to {sent}/{len(entries)} Total Cost: {total}"
        return web.json_response({"SMSMessageData": {"Message": message, "Recipients": entries}}, status=201)

    def _one(self, to: str, sender: str, body: str) -> dict[str, Any]:
        refused = self._refuse_next
        if refused is None and not _E164.fullmatch(to):
            refused = 403
        if refused is not None:
            self._refuse_next = None
            log.info("sim.sms.refused", to=mask_phone(to), status_code=refused)
            return {
                "statusCode": refused,
                "number": to,
                "status": REFUSALS[refused],
                "cost": "0",
                "messageId": "None",
            }
        message_id = f"ATXid_{secrets.token_hex(16)}"
        sent_at = self.clock.now().astimezone(UTC).isoformat()
        self.mailbox.append(SimulatedSms(message_id, to, sender, body, sent_at))
        log.info("sim.sms.accepted", to=mask_phone(to), message_id=message_id)
        if self.delivery_report_url:
            task = asyncio.create_task(self._report(message_id, to))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)
        return {"statusCode": 101, "number": to, "status": "Success", "cost": COST, "messageId": message_id}

    async def _report(self, message_id: str, to: str) -> None:
        assert self.delivery_report_url is not None
        form = {
            "id": message_id,
            "status": "Success",
            "phoneNumber": to,
            "networkCode": "63902",
            "retryCount": "0",
        }
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                async with session.post(self.delivery_report_url, data=form) as response:
                    await response.read()

    # --- control ------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.Response:
        to = request.query.get("to", "")
        try:
            limit = max(1, min(int(request.query.get("limit", "20")), 1000))
        except ValueError:
            return web.json_response({"error": "limit must be a number"}, status=400)
        found = [m for m in reversed(self.mailbox) if not to or m.to == to][:limit]
        return web.json_response({"messages": [m.as_json() for m in found]})

    async def _refuse(self, request: web.Request) -> web.Response:
        try:
            code = int((await request.json())["status_code"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'give {"status_code": N}'}, status=400)
        if code not in REFUSALS:
            return web.json_response({"error": f"status_code must be one of {sorted(REFUSALS)}"}, status=400)
        self._refuse_next = code
        return web.json_response({"refuse_next": code})

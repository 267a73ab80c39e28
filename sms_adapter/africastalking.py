"""Africa's Talking SMS: `POST {base}/version1/messaging`, form-encoded, `apiKey` header.

The contract as Africa's Talking documents it (written from that documentation, not from a live
account): form fields `username`, `to` (comma-separated E.164), `message`, optional `from` (the
registered sender id or short code); the answer (HTTP 201) is
`{"SMSMessageData": {"Message": "Sent to 1/1 Total Cost: KES 0.8000", "Recipients": [
{"statusCode": 101, "number": "+2547...", "status": "Success", "cost": "KES 0.8000",
"messageId": "ATXid_..."}]}}`. Recipient statusCode 100 (Processed), 101 (Sent) and 102 (Queued)
mean accepted; 401..409 and 500..502 are refusals (RiskHold, InvalidSenderId, InvalidPhoneNumber,
UnsupportedNumberType, InsufficientBalance, UserInBlacklist, CouldNotRoute, DoNotDisturbRejection,
InternalServerError, GatewayError, RejectedByGateway). A wrong username or key gets HTTP 401 with
a plain-text body. Delivery reports are POSTed later (form: id, status, phoneNumber, networkCode,
failureReason, retryCount) to the callback URL set in the account's dashboard.

One message to one recipient per call: PenPay's messages are personal (codes, receipts).
Logs carry the masked phone, the message id, status and cost, never the body (it holds codes).
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import structlog

from application.identity.errors import MessageNotDelivered
from security.masking import mask_phone

log = structlog.get_logger("penpay.notify.sms")

MESSAGING_PATH = "/version1/messaging"
LIVE_BASE_URL = "https://api.africastalking.com"
SANDBOX_BASE_URL = "https://api.sandbox.africastalking.com"
ACCEPTED_STATUS_CODES = frozenset({100, 101, 102})
# What a client is told (an operator's balance or key problems are not its business; logs say them).
NOT_SENT = "the SMS could not be sent; try again shortly"


@dataclass(frozen=True, slots=True)
class SmsReceipt:
    message_id: str
    status_code: int
    status: str
    cost: str


def parse_recipient(answer: object) -> SmsReceipt:
    """The one recipient's entry of a messaging answer (ValueError when the shape is not AT's)."""
    if not isinstance(answer, dict):
        raise ValueError("answer is not a JSON object")
    data = answer.get("SMSMessageData")
    recipients = data.get("Recipients") if isinstance(data, dict) else None
    if not isinstance(recipients, list) or len(recipients) != 1 or not isinstance(recipients[0], dict):
        raise ValueError("answer has not exactly one recipient")
    entry = recipients[0]
    return SmsReceipt(
        message_id=str(entry.get("messageId", "")),
        status_code=int(entry["statusCode"]),
        status=str(entry.get("status", "")),
        cost=str(entry.get("cost", "")),
    )


class AfricasTalkingSms:
    """send_sms of the Notifier port over Africa's Talking (send_email is not its job)."""

    def __init__(
        self,
        *,
        username: str,
        api_key: str,
        sender_id: str = "",
        base_url: str = LIVE_BASE_URL,
        timeout: float = 10.0,
    ) -> None:
        if not username or not api_key:
            raise ValueError("Africa's Talking needs a username and an API key")
        self._username, self._api_key, self._sender_id = username, api_key, sender_id
        self._url = base_url.rstrip("/") + MESSAGING_PATH
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # the key never shows
        return f"AfricasTalkingSms(url={self._url!r}, username={self._username!r}, api_key='***')"

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send_sms(self, *, to: str, body: str) -> None:
        await self.send(to=to, body=body)

    async def send(self, *, to: str, body: str) -> SmsReceipt:
        form = {"username": self._username, "to": to, "message": body}
        if self._sender_id:
            form["from"] = self._sender_id
        headers = {"apiKey": self._api_key, "Accept": "application/json"}
        masked = mask_phone(to)
        session = await self._client()
        try:
            async with session.post(self._url, data=form, headers=headers) as response:
                text = await response.text()
                if response.status not in (200, 201):
                    log.warning("sms.refused", to=masked, http_status=response.status)
                    raise MessageNotDelivered(NOT_SENT, provider_status=f"HTTP {response.status}")
                receipt = parse_recipient(await response.json(content_type=None) if text else None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("sms.unreachable", to=masked, error=type(exc).__name__)
            raise MessageNotDelivered(NOT_SENT, provider_status="no answer") from None
        except ValueError as exc:
            log.warning("sms.bad_answer", to=masked, error=str(exc))
            raise MessageNotDelivered(NOT_SENT, provider_status="unreadable answer") from None
        if receipt.status_code not in ACCEPTED_STATUS_CODES:
            log.warning("sms.rejected", to=masked, status_code=receipt.status_code, status=receipt.status)
            raise MessageNotDelivered(NOT_SENT, provider_status=receipt.status)
        log.info(
            "sms.sent", to=masked, message_id=receipt.message_id, status=receipt.status, cost=receipt.cost
        )
        return receipt

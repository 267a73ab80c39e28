"""Africa's Talking delivery reports: `POST <callback base>/sms/delivery-reports/<token>`.

Africa's Talking POSTs one form per message once the network answers: id (the messageId the send
returned), status (Sent, Submitted, Buffered, Rejected, Success, Failed, AbsentSubscriber),
phoneNumber, networkCode, failureReason (with Rejected/Failed), retryCount. Register the URL in the
Africa's Talking dashboard; the secret path token (PENPAY_SMS_AT_DELIVERY_REPORT_TOKEN) is the
authentication, compared in constant time (Africa's Talking signs nothing and publishes no IP
ranges). Each report is logged (masked phone, message id, status, reason) and counted in
`penpay_sms_delivery_reports_total{status}`: alert on a rising Failed/Rejected share. Nothing is
stored: a report changes no money and no verification state.
"""

from __future__ import annotations

import hmac

import structlog
from aiohttp import web
from prometheus_client import Counter

from security.masking import mask_phone

log = structlog.get_logger("penpay.notify.sms")

PATH = "/sms/delivery-reports/{token}"
STATUSES = frozenset({"Sent", "Submitted", "Buffered", "Rejected", "Success", "Failed", "AbsentSubscriber"})
REPORTS = Counter(
    "penpay_sms_delivery_reports_total", "SMS delivery reports from Africa's Talking", ["status"]
)
MIN_TOKEN_LENGTH = 16


class DeliveryReports:
    def __init__(self, token: str) -> None:
        if len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"the delivery report token must be at least {MIN_TOKEN_LENGTH} characters")
        self._token = token.encode()

    def routes(self) -> list[web.RouteDef]:
        return [web.post(PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.Response:
        if not hmac.compare_digest(request.match_info["token"].encode(), self._token):
            raise web.HTTPNotFound()  # reveals nothing
        form = await request.post()
        message_id, status = str(form.get("id", "")), str(form.get("status", ""))
        if not message_id or status not in STATUSES:
            return web.json_response({"error": "a report needs id and a known status"}, status=400)
        REPORTS.labels(status=status).inc()
        fields = {
            "message_id": message_id[:64],
            "status": status,
            "to": mask_phone(str(form.get("phoneNumber", ""))),
            "network_code": str(form.get("networkCode", ""))[:8],
            "failure_reason": str(form.get("failureReason", ""))[:64] or None,
        }
        if status in ("Rejected", "Failed", "AbsentSubscriber"):
            log.warning("sms.not_delivered", **fields)
        else:
            log.info("sms.delivery_report", **fields)
        return web.Response(status=200)

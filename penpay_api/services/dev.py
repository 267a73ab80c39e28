"""penpay.dev.v1.DevService (development and testing only; never registered in production):
the messages the development notifier kept, for the caller's own phone and email only."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from application.identity.errors import UserNotFound
from application.identity.ports import IdentityUnitOfWork
from domain.shared.errors import InvalidValue
from penpay.dev.v1 import dev_pb2 as pb
from penpay.dev.v1 import dev_pb2_grpc as pb_grpc
from penpay_api.services._common import caller_id, timestamp
from security.notify import DevelopmentNotifier

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DevService"].full_name
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class DevServicer(pb_grpc.DevServiceServicer):
    def __init__(
        self, notifier: DevelopmentNotifier, *, unit_of_work: Callable[[], IdentityUnitOfWork]
    ) -> None:
        self._notifier = notifier
        self._uow = unit_of_work

    async def ListSentMessages(
        self, request: pb.ListSentMessagesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSentMessagesResponse:
        if request.channel not in ("", "sms", "email"):
            raise InvalidValue("channel must be sms, email or empty", field="channel")
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise InvalidValue(f"page_size must be 1 to {MAX_PAGE_SIZE}", field="page_size")
        user_id = caller_id()
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise UserNotFound("no such user")
        mine = {("sms", user.phone.e164), ("email", user.email.value)}
        size = request.page_size or DEFAULT_PAGE_SIZE
        messages = [
            m
            for m in reversed(self._notifier.sent)
            if (m.channel, m.to) in mine and (not request.channel or m.channel == request.channel)
        ][:size]
        return pb.ListSentMessagesResponse(
            messages=[
                pb.SentMessage(
                    channel=m.channel, to=m.to, subject=m.subject, body=m.body, sent_at=timestamp(m.sent_at)
                )
                for m in messages
            ]
        )

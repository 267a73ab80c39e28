"""Phone verification with SMS by Africa's Talking (its simulator over a real socket), as production
wires it: the code arrives in the provider's mailbox; a provider that refuses gets UNAVAILABLE with
a generic message, and the client may simply ask again."""

from __future__ import annotations

import grpc
import pytest

from penpay.auth.v1 import auth_pb2
from security.notify import DevelopmentNotifier, SplitNotifier
from sms_adapter.africastalking import AfricasTalkingSms
from sms_adapter.simulator import DEFAULT_API_KEY, DEFAULT_USERNAME, SmsSimulator

from .conftest import StartApi, details_of

pytestmark = pytest.mark.integration


async def test_a_phone_is_verified_with_the_code_africas_talking_delivered(start_api: StartApi) -> None:
    async with SmsSimulator() as sim:
        at = AfricasTalkingSms(username=DEFAULT_USERNAME, api_key=DEFAULT_API_KEY, base_url=sim.base_url)
        api = await start_api(notifier=SplitNotifier(sms=at, email=DevelopmentNotifier()), dev_services=False)
        try:
            account = await api.new_account()
            sim._refuse_next = 405  # InsufficientBalance on the operator's Africa's Talking account
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await api.auth.RequestPhoneVerification(
                    auth_pb2.RequestPhoneVerificationRequest(), metadata=account.auth
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert details_of(refused.value).error_info.reason == "MESSAGE_NOT_DELIVERED"
            assert "InsufficientBalance" not in (refused.value.details() or "")

            await api.auth.RequestPhoneVerification(
                auth_pb2.RequestPhoneVerificationRequest(), metadata=account.auth
            )
            [sms] = sim.sent_to(account.phone)
            code = sms.body.split("code is ")[1][:6]
            await api.auth.VerifyPhone(auth_pb2.VerifyPhoneRequest(phone_number=account.phone, code=code))
        finally:
            await at.aclose()

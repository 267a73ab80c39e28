"""DerivAccountGateway over the gateway's gRPC API: the identity use cases' view of Deriv.

The user's OAuth token travels to the gateway in the request body only; it is never logged here.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from application.identity.errors import DerivBindingRefused, DerivRebindRequired
from application.identity.ports import DerivAuthorization, DerivRestAccount
from penpay.deriv.v1 import deriv_gateway_pb2 as pb
from penpay.deriv.v1 import deriv_gateway_pb2_grpc as pb_grpc

# The token or account is at fault: refuse the binding. Anything else (UNAVAILABLE, ...) is ours
# or Deriv's trouble and propagates as it is, so the caller can retry.
_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
    }
)

# A REST token Deriv refuses (401: revoked or expired; 403: a scope taken back; INVALID_ARGUMENT:
# not a token at all) is dead for good: the user must go through Deriv's consent again.
_TOKEN_DEAD = frozenset(
    {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT}
)

# get_settings fields that KycSnapshot.from_get_settings reads, as the gateway returns them.
_SETTINGS_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "date_of_birth",
    "phone",
    "country_code",
    "residence",
    "citizen",
    "place_of_birth",
    "address_line_1",
    "address_line_2",
    "address_city",
    "address_state",
    "address_postcode",
    "tax_residence",
)


class GatewayDerivAccounts:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 20.0) -> None:
        self._stub = pb_grpc.DerivGatewayServiceStub(channel)
        self._timeout = timeout

    async def authorize(self, token: str) -> DerivAuthorization:
        try:
            reply = await self._stub.Authorize(pb.AuthorizeRequest(client_token=token), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _refusal_or_error(error) from None
        return DerivAuthorization(
            loginid=reply.loginid,
            currency=reply.currency,
            scopes=tuple(reply.scopes),
            is_virtual=reply.is_virtual,
            fullname=reply.fullname,
            email=reply.email,
        )

    async def authorize_rest(self, token: str) -> DerivRestAccount:
        """The new-API account an OAuth access token opens (nickname, main wallet currency)."""
        try:
            reply = await self._stub.Authorize(
                pb.AuthorizeRequest(client_token=token, api=pb.DERIV_API_REST), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in _TOKEN_DEAD:
                raise DerivRebindRequired(
                    "Deriv no longer accepts your sign-in: bind your Deriv account again"
                ) from None
            raise _refusal_or_error(error) from None
        return DerivRestAccount(nickname=reply.nickname, currency=reply.currency)

    async def get_settings(self, token: str) -> Mapping[str, object]:
        try:
            reply = await self._stub.GetSettings(
                pb.GetSettingsRequest(client_token=token), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise _refusal_or_error(error) from None
        # Proto3 has no "absent": empty strings and a 0 date of birth mean Deriv had no value.
        return {name: value for name in _SETTINGS_FIELDS if (value := getattr(reply, name))}


def _refusal_or_error(error: grpc.aio.AioRpcError) -> Exception:
    if error.code() in _REFUSALS:
        return DerivBindingRefused(f"Deriv refused the token ({error.code().name})")
    refused: Exception = error
    return refused

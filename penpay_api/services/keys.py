"""penpay.keys.v1.KeysService: the access tokens' public keys (JWKS) for internal verifiers.

Public (no token): the bridge serves it at /.well-known/jwks.json. The set is read from the token
signer on every call, so a rotation shows at once.
"""

from __future__ import annotations

import grpc

from penpay.keys.v1 import keys_pb2 as pb
from penpay.keys.v1 import keys_pb2_grpc as pb_grpc
from security.access_tokens import RsaAccessTokens

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["KeysService"].full_name
PUBLIC_METHODS = (f"/{SERVICE_NAME}/GetJwks",)


class KeysServicer(pb_grpc.KeysServiceServicer):
    def __init__(self, tokens: RsaAccessTokens) -> None:
        self._tokens = tokens

    async def GetJwks(
        self, request: pb.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJwksResponse:
        return pb.GetJwksResponse(keys=[pb.JsonWebKey(**jwk) for jwk in self._tokens.jwks()["keys"]])

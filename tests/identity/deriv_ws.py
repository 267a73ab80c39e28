"""A small DerivAccountGateway speaking Deriv's WebSocket API v3 directly (websockets).

For the tests of the binding use case against the Deriv simulator; the composition root will
use the gateway daemon's gRPC Authorize/GetSettings instead. One short connection per call:
the user's token authorizes that connection only, and never leaves it (never logged).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.client import connect

from application.identity.errors import DerivBindingRefused
from application.identity.ports import DerivAuthorization, DerivRestAccount


class DerivWebSocketAccounts:
    def __init__(self, url: str) -> None:
        self._url = url

    async def _call(
        self, token: str, request: dict[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        async with connect(self._url) as ws:
            await ws.send(json.dumps({"authorize": token, "req_id": 1}))
            auth = json.loads(await ws.recv())
            if "error" in auth:
                raise DerivBindingRefused(f"Deriv refused the token: {auth['error'].get('code', 'error')}")
            if request is None:
                return auth, {}
            await ws.send(json.dumps({**request, "req_id": 2}))
            reply = json.loads(await ws.recv())
            if "error" in reply:
                raise DerivBindingRefused(f"Deriv call failed: {reply['error'].get('code', 'error')}")
            return auth, reply

    async def authorize(self, token: str) -> DerivAuthorization:
        auth, _ = await self._call(token, None)
        a = auth["authorize"]
        return DerivAuthorization(
            loginid=str(a["loginid"]),
            currency=str(a.get("currency") or ""),
            scopes=tuple(a.get("scopes") or ()),
            is_virtual=bool(a.get("is_virtual")),
            fullname=str(a.get("fullname") or ""),
            email=str(a.get("email") or ""),
        )

    async def get_settings(self, token: str) -> Mapping[str, object]:
        _, reply = await self._call(token, {"get_settings": 1})
        settings: dict[str, object] = reply["get_settings"]
        return settings

    async def authorize_rest(self, token: str) -> DerivRestAccount:
        # Speaks v3 only: the binding tests over Deriv's new API use the gateway's REST client
        # (tests/identity/test_deriv_rest_binding.py).
        raise DerivBindingRefused("this test client speaks Deriv's API v3 only")

"""A CSV export whose later page the API fails to give ends as a broken download, never as a short
file that looks whole. The console runs on a real socket in front of a bridge that answers the
first page and then fails (what a restarting API does); no browser needed."""

from __future__ import annotations

from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web

from penpay.ops.v1 import ops_pb2 as pb
from penpay_api.console.pages import Console
from penpay_api.http import cookies, start_server

pytestmark = pytest.mark.integration
RUN_ID = "01a24b0a-3ec7-76bb-a3aa-bd72a41c1c5b"


class FirstPageOnly:
    """The bridge's surface the console uses: the first page of items, then UNAVAILABLE."""

    class config:
        cookie_policy = cookies.CookiePolicy()

    def __init__(self) -> None:
        self.calls = 0

    async def call(self, method: str, message: Any, *, authorization: str, request: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            item = pb.ReconciliationItem(item_key="c2b:UAB1CD2EF3", item_class="MATCHED")
            return pb.ListReconciliationItemsResponse(items=[item], next_page_token="c2b:UAB1CD2EF3")
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "the API went away"
        )


async def test_an_export_the_api_stops_answering_is_a_broken_download() -> None:
    bridge = FirstPageOnly()
    app = web.Application()
    Console(bridge).add_routes(app)
    runner, port = await start_server(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{port}/ops/reconciliation/{RUN_ID}/items.csv"
            async with http.get(url, headers={"Authorization": "Bearer " + "x" * 30}) as answer:
                assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
                with pytest.raises(aiohttp.ClientPayloadError):
                    await answer.read()
        assert bridge.calls == 2
    finally:
        await runner.cleanup()

"""Server streaming over HTTP: newline-delimited JSON by default, server-sent events on request."""

from __future__ import annotations

import json

import pytest

from tests.http_bridge.conftest import Bridge

pytestmark = pytest.mark.integration


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _events(text: str) -> list[tuple[str, str]]:
    """(event name, data) of each SSE event; comments (heartbeats) skipped."""
    events = []
    for block in text.split("\n\n"):
        name, data = "message", []
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            events.append((name, "\n".join(data)))
    return events


async def test_ndjson_stream(bridge: Bridge) -> None:
    async with bridge.http.get("/v1/items:watch", params={"count": "3"}) as response:
        assert response.status == 200
        assert response.content_type == "application/x-ndjson"
        lines = _lines(await response.text())
    assert [line["result"]["item_id"] for line in lines] == ["item-0", "item-1", "item-2"]  # type: ignore[index]
    assert lines[1]["result"]["count"] == "1"  # type: ignore[index]
    assert bridge.recorder.last("WatchItems").request.count == 3


async def test_ndjson_stream_failing_midway_ends_with_an_error_line(bridge: Bridge) -> None:
    async with bridge.http.get("/v1/items:watch", params={"count": "2", "fail_with": "10"}) as response:
        assert response.status == 200  # the head was sent with the first message
        lines = _lines(await response.text())
    assert len(lines) == 3
    assert "result" in lines[0] and "result" in lines[1]
    error = lines[2]["error"]
    assert error["code"] == 10 and error["message"] == "the stream broke"  # type: ignore[index]


async def test_ndjson_stream_failing_before_any_message_has_the_mapped_status(bridge: Bridge) -> None:
    async with bridge.http.get("/v1/items:watch", params={"count": "0", "fail_with": "5"}) as response:
        assert response.status == 404
        lines = _lines(await response.text())
    assert lines == [{"error": lines[0]["error"]}]
    assert lines[0]["error"]["code"] == 5  # type: ignore[index]


async def test_sse_stream(bridge: Bridge) -> None:
    headers = {"Accept": "text/event-stream"}
    async with bridge.http.get(
        "/v1/items:watch", params={"count": "2", "fail_with": "13"}, headers=headers
    ) as r:
        assert r.status == 200
        assert r.content_type == "text/event-stream"
        assert r.headers["Cache-Control"] == "no-cache"
        events = _events(await r.text())
    assert [name for name, _ in events] == ["message", "message", "error"]
    assert json.loads(events[0][1])["item_id"] == "item-0"
    assert json.loads(events[2][1])["code"] == 13


async def test_sse_heartbeats_while_the_stream_is_quiet(bridge: Bridge) -> None:
    headers = {"Accept": "text/event-stream"}
    params = {"count": "1", "delay": "0.7"}
    async with bridge.http.get("/v1/items:watch", params=params, headers=headers) as response:
        assert response.status == 200
        assert response.headers["Grpc-Metadata-x-stream"] == "open"  # head sent before the first item
        text = await response.text()
    assert text.count(": keep-alive") >= 2  # heartbeat every 0.2 s in the test configuration
    assert [json.loads(data)["item_id"] for _, data in _events(text)] == ["item-0"]


async def test_sse_failure_before_any_message_is_a_json_error(bridge: Bridge) -> None:
    headers = {"Accept": "text/event-stream"}
    async with bridge.http.get("/v1/items:watch", params={"fail_with": "7"}, headers=headers) as response:
        assert response.status == 403
        assert response.content_type == "application/json"
        assert (await response.json())["code"] == 7


async def test_a_client_that_leaves_cancels_the_backend_stream(bridge: Bridge) -> None:
    import asyncio

    params = {"count": "1000000"}
    async with bridge.http.get("/v1/items:watch", params=params) as response:
        assert response.status == 200
        first = await response.content.readline()
        assert json.loads(first)["result"]["item_id"] == "item-0"
    # the connection is closed: the bridge cancels the call instead of pulling a million items
    await asyncio.wait_for(bridge.recorder.stream_ended.wait(), 5)
    assert bridge.recorder.streamed < 1_000_000

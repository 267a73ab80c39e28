"""The sans-I/O protocol core: frames in, frames out, no sockets and no asyncio.

Like the websockets library's `Protocol`, it only turns bytes/text into events and back:
- `encode(call, fields)` allocates a `req_id`, remembers the pending request and returns the
  frame text to write;
- `receive(text)` parses one inbound frame and returns an event: a `Reply` to a pending request
  (with a typed `DerivError` when the reply carries `error`), a `StreamMessage` for a subscription
  (stream messages carry the subscribing request's `req_id`), or an `Unsolicited` frame;
- `connection_lost()` forgets everything and tells which requests were in flight.
A reply to a call that names an operation (`ECHO_CHECKED`) counts only if its `echo_req` is the
request sent under that `req_id`; otherwise it is a `ForeignAnswer` (outcome unknown), error or not.
The asyncio layer (deriv_gateway.connection) owns the socket, the futures and the timers.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from deriv_gateway.protocol.errors import DerivError, ForeignAnswer, UnexpectedReply, decode_error

REQ_ID_LIMIT = 2**31 - 1  # Deriv's req_id is an integer; keep it in a signed 32-bit range
# Calls whose answer says whether money moved (or, for a statement, where to look): used only when
# it is provably about the request we sent (issue 21). Other calls skip the comparison.
ECHO_CHECKED = frozenset({"paymentagent_transfer", "paymentagent_withdraw", "statement"})
REDACTED = "<not shown>"  # Deriv's echo of a field its schema marks sensitive
# json.dumps with separators builds an encoder per call; one, built once, writes the same text
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


class ProtocolError(Exception):
    """An inbound frame that is not a Deriv message (not JSON, not an object)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    req_id: int
    call: str
    text: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    req_id: int
    call: str
    message: dict[str, Any]
    error: DerivError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def result(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return self.message


@dataclass(frozen=True, slots=True)
class StreamMessage:
    req_id: int
    subscription_id: str | None
    message: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Unsolicited:
    message: dict[str, Any]


Event = Reply | StreamMessage | Unsolicited


@dataclass(slots=True)
class _Pending:
    call: str
    subscribe: bool
    sent: dict[str, Any] | None = None  # the request, for calls in ECHO_CHECKED


@dataclass(slots=True)
class ProtocolCore:
    """Correlation state of one WebSocket connection."""

    first_req_id: int = 1
    _ids: itertools.count[int] = field(init=False, repr=False)
    _pending: dict[int, _Pending] = field(init=False, default_factory=dict)
    # req_id of a live subscription -> subscription id (once known)
    _streams: dict[int, str | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = itertools.count(self.first_req_id)

    # --- outbound --------------------------------------------------------------------

    def next_req_id(self) -> int:
        req_id = next(self._ids)
        if req_id > REQ_ID_LIMIT:
            self._ids = itertools.count(2)
            req_id = 1
        while req_id in self._pending or req_id in self._streams:
            req_id = next(self._ids)
        return req_id

    def encode(self, call: str, fields: dict[str, Any] | None = None, *, value: Any = 1) -> Outgoing:
        """A request frame `{call: value, **fields, req_id}`; `subscribe: 1` in fields makes it a stream."""
        payload: dict[str, Any] = {call: value}
        if fields:
            payload.update(fields)
        if "req_id" in payload:
            raise ValueError("req_id is allocated by the protocol core")
        req_id = self.next_req_id()
        payload["req_id"] = req_id
        subscribe = payload.get("subscribe") == 1
        self._pending[req_id] = _Pending(call, subscribe, payload if call in ECHO_CHECKED else None)
        return Outgoing(req_id, call, _compact_json(payload), payload)

    def cancel(self, req_id: int) -> None:
        """Forget a request the caller gave up on; a late reply becomes `Unsolicited`."""
        self._pending.pop(req_id, None)

    def forget_stream(self, req_id: int) -> str | None:
        return self._streams.pop(req_id, None)

    # --- inbound ---------------------------------------------------------------------

    def receive(self, text: str | bytes) -> Event:
        try:
            message = json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"not JSON: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError("not a JSON object")
        req_id = message.get("req_id")
        if not isinstance(req_id, int) or isinstance(req_id, bool):
            return Unsolicited(message)
        subscription = message.get("subscription")
        subscription_id = subscription.get("id") if isinstance(subscription, dict) else None
        pending = self._pending.pop(req_id, None)
        if pending is not None:
            if pending.sent is not None and not echo_matches(pending.sent, message.get("echo_req")):
                foreign = ForeignAnswer(
                    f"the answer to {pending.call!r} names another request: {message.get('echo_req')!r}"[
                        :300
                    ],
                    msg_type=pending.call,
                    req_id=req_id,
                )
                return Reply(req_id, pending.call, message, foreign)
            error = decode_error(message) if "error" in message else None
            if (
                error is None
                and pending.call != message.get("msg_type")
                and message.get("msg_type") != "error"
            ):
                error = UnexpectedReply(
                    f"reply msg_type {message.get('msg_type')!r} to {pending.call!r}", req_id=req_id
                )
            if pending.subscribe and error is None:
                self._streams[req_id] = subscription_id
            return Reply(req_id, pending.call, message, error)
        if req_id in self._streams:
            if self._streams[req_id] is None and subscription_id:
                self._streams[req_id] = subscription_id
            return StreamMessage(req_id, subscription_id, message)
        return Unsolicited(message)

    # --- lifecycle -------------------------------------------------------------------

    def connection_lost(self) -> tuple[list[int], list[int]]:
        """Forget all state; returns (pending req_ids, stream req_ids) that were live."""
        pending = list(self._pending)
        streams = list(self._streams)
        self._pending.clear()
        self._streams.clear()
        return pending, streams

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def is_pending(self, req_id: int) -> bool:
        return req_id in self._pending

    def subscription_id(self, req_id: int) -> str | None:
        return self._streams.get(req_id)


def echo_matches(sent: dict[str, Any], echo: Any) -> bool:
    """Whether `echo` (a reply's echo_req) is the request `sent`: the same fields, each equal (a number
    by value, so 10 and 10.0 agree) or redacted by Deriv."""
    if echo == sent:  # the usual case, in one C-level comparison (a hot path: every transfer)
        return True
    if not isinstance(echo, dict) or echo.keys() != sent.keys():
        return False
    return all(echo[key] == REDACTED or _same_value(value, echo[key]) for key, value in sent.items())


def _same_value(sent: Any, echoed: Any) -> bool:
    if sent == echoed:  # Python compares 10 and 10.0 exactly
        return True
    if isinstance(sent, int | float) and not isinstance(sent, bool) and isinstance(echoed, str):
        try:  # a number echoed as a numeric string
            return Decimal(str(sent)) == Decimal(echoed)
        except InvalidOperation:
            return False
    return False

"""Sans-I/O Deriv WebSocket protocol: encoding, correlation, typed errors, rate limits. No asyncio here."""

from deriv_gateway.protocol.core import (
    Event,
    Outgoing,
    ProtocolCore,
    ProtocolError,
    Reply,
    StreamMessage,
    Unsolicited,
)
from deriv_gateway.protocol.errors import DerivError, decode_error

__all__ = [
    "DerivError",
    "Event",
    "Outgoing",
    "ProtocolCore",
    "ProtocolError",
    "Reply",
    "StreamMessage",
    "Unsolicited",
    "decode_error",
]

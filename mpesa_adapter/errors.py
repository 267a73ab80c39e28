"""Typed errors of the Daraja client. Messages never carry a secret (see client._scrub)."""

from __future__ import annotations


class MpesaAdapterError(Exception):
    """Base of everything this package raises on purpose."""


class InvalidRequest(MpesaAdapterError, ValueError):
    """Rejected before anything was sent (bad phone, non-whole amount, over-long reference)."""


class DarajaError(MpesaAdapterError):
    """A gateway error envelope `{requestId, errorCode, errorMessage}` (or an HTTP status without one)."""

    def __init__(
        self,
        error_code: str,
        error_message: str,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(
            f"{error_code}: {error_message}" + (f" (requestId {request_id})" if request_id else "")
        )
        self.error_code = error_code
        self.error_message = error_message
        self.request_id = request_id
        self.http_status = http_status


class AuthenticationFailed(DarajaError):
    """OAuth refused the consumer key/secret (or the grant); a configuration problem, not retried."""


class InvalidAccessToken(DarajaError):
    """404.001.03 / 401.002.01 / 400.003.01 / 401.003.01 that survived one refresh-and-retry."""


class SpikeArrest(DarajaError):
    """500.003.02: Apigee's per-second limit. Back off; retried automatically only for queries."""


class QuotaViolation(SpikeArrest):
    """500.003.03: the app's quota is spent."""


class DuplicateOriginatorConversationID(DarajaError):
    """500.002.1001 on B2C: an earlier request with this id got through. Wait for its result or query
    Transaction Status; never send it again under a new id."""


class SubscriberLocked(DarajaError):
    """500.001.1001 "Unable to lock subscriber": a push is open for this MSISDN; retry after a minute."""


class DarajaConfigurationError(DarajaError):
    """500.001.1001 "Wrong credentials" / "Merchant does not exist", 2028-style set-up errors: no retry."""


class UnexpectedAnswer(DarajaError):
    """An answer that is not Daraja's own: an HTML page, an empty or non-JSON body, a JSON object without
    the fields Daraja always sends. Something between us and Daraja (a wrong base URL, a proxy) answered,
    or Daraja changed: it proves neither that the request was refused nor that it was not acted on."""


class ForeignAnswer(MpesaAdapterError):
    """Daraja answered, but about another request: an id in the answer is not the one we asked about
    (`field`: ours `expected`, theirs `got`). Nothing in it may be used; `raw` is the answer's bytes,
    kept for review. Never retried automatically: asking again is the caller's decision."""

    def __init__(self, api: str, field: str, expected: str, got: str | None, raw: bytes) -> None:
        super().__init__(f"{api}: the answer is about {field} {got!r}, not ours {expected!r}")
        self.api = api
        self.field = field
        self.expected = expected
        self.got = got
        self.raw = raw


# HTTP statuses Daraja uses for a request that never reached M-Pesa because of our set-up (wrong URL,
# method, credentials, token), whatever the body says.
SETUP_HTTP_STATUSES = frozenset({401, 403, 404, 405, 407})


def is_setup_error(exc: DarajaError) -> bool:
    """Not the provider's own business refusal: our set-up, or whatever sits between us and Daraja, is
    wrong. Such an answer must never end a payment (no final refusal, no refund): it waits for a person."""
    ours = UnexpectedAnswer | DarajaConfigurationError | AuthenticationFailed | InvalidAccessToken
    if isinstance(exc, ours):
        return True
    return (exc.http_status or 0) in SETUP_HTTP_STATUSES


class TransportError(MpesaAdapterError):
    """A query could not be completed (timeout, connection lost) after its retries; nothing moved."""


class DarajaUnavailable(TransportError):
    """The connection could not be opened, so the request was certainly not sent."""


class OutcomeUnknown(MpesaAdapterError):
    """A money-moving POST (STK Push, B2C) was, or may have been, sent and no answer came back.

    The caller marks the payment "outcome unknown" and resolves it by STK Query (by CheckoutRequestID if
    one is known) or Transaction Status (by OriginatorConversationID). It is never re-sent blindly.
    """

    def __init__(self, operation: str, reason: str, *, originator_conversation_id: str | None = None) -> None:
        super().__init__(f"{operation}: outcome unknown ({reason})")
        self.operation = operation
        self.reason = reason
        self.originator_conversation_id = originator_conversation_id

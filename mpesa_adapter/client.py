"""The Daraja client: OAuth, STK Push/Query, B2C v3, Reversal, Transaction Status, Account Balance (aiohttp).

Retry rules (daraja-protocol.md 2.3, 3.3, 7):
- Token fetches and queries (STK Query, Transaction Status, Account Balance) are safe to repeat: they are
  retried with tenacity (exponential backoff with jitter) on timeouts, lost connections, spike arrest,
  quota and 500.003.1001.
- A money-moving POST (STK Push, B2C, Reversal) is sent once. If it times out or the connection drops
  after it may have left, it raises `OutcomeUnknown`; the caller resolves it by STK Query /
  Transaction Status. The one automatic repeat is after an invalid-token answer (the gateway
  refused the call before it reached M-Pesa): the token is refreshed and the call sent once more.
  A B2C retry is explicit, by the caller, and must reuse the same OriginatorConversationID
  (`originator_conversation_id_for`); a Reversal is never sent again (Transaction Status resolves it).

No secret (consumer secret, passkey, STK Password, initiator password, SecurityCredential, Authorization
header, access token) is ever logged or put in an exception message: log lines carry the API name, HTTP
status, error code and correlation ids only, and gateway error messages are scrubbed of tokens.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from domain.shared.clock import SystemClock
from mpesa_adapter import errors
from mpesa_adapter.access_token import AccessTokens, TokenCache
from mpesa_adapter.config import DarajaConfig
from mpesa_adapter.pull_transactions import (
    PULL_QUERY,
    PULL_REGISTER,
    PulledTransaction,
    parse_query,
    parse_register,
    query_body,
    register_body,
)
from mpesa_adapter.routes import CallbackKind, callback_url
from mpesa_adapter.security import load_public_key, security_credential, stk_password, stk_timestamp
from mpesa_adapter.types import (
    C2BUrlsRegistered,
    RequestAccepted,
    StkPushAccepted,
    StkQueryResult,
    StkQueryStatus,
)

log = logging.getLogger("penpay.mpesa.client")
T = TypeVar("T")

INVALID_TOKEN_CODES = frozenset({"404.001.03", "401.002.01", "400.003.01", "401.003.01"})
MSISDN_RE = re.compile(r"^254(7|1)\d{8}$")
_TOKEN_IN_MESSAGE = re.compile(r"(Invalid Access Token\s*-\s*)\S+", re.IGNORECASE)

STK_PUSH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY = "/mpesa/stkpushquery/v1/query"
B2C = "/mpesa/b2c/v3/paymentrequest"
TRANSACTION_STATUS = "/mpesa/transactionstatus/v1/query"
ACCOUNT_BALANCE = "/mpesa/accountbalance/v1/query"
REVERSAL = "/mpesa/reversal/v1/request"
# Reversal's receiver identifier type for an organisation's shortcode (public SDKs and samples send
# "11"; the wire key is misspelt RecieverIdentifierType, daraja-protocol.md 11).
REVERSAL_RECEIVER_TYPE = "11"
C2B_REGISTER_URL = "/mpesa/c2b/v1/registerurl"
OAUTH = "/oauth/v1/generate"


def normalise_msisdn(phone: str) -> str:
    """07.., 01.., +2547.., 7.., 1.. -> 2547XXXXXXXX / 2541XXXXXXXX; anything else is InvalidRequest."""
    digits = phone.strip().replace(" ", "")
    if digits.startswith("+"):
        digits = digits[1:]
    if digits.startswith("0") and len(digits) == 10:
        digits = "254" + digits[1:]
    elif len(digits) == 9 and digits[0] in "17":
        digits = "254" + digits
    if not MSISDN_RE.match(digits):
        raise errors.InvalidRequest("not a Kenyan M-Pesa MSISDN")
    return digits


def whole_shillings(amount_cents: int, *, minimum: int, maximum: int = 250_000) -> int:
    """Minor units -> whole KES. Never rounds: a non-whole amount is rejected."""
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise errors.InvalidRequest("amount must be an integer number of cents")
    if amount_cents % 100:
        raise errors.InvalidRequest("M-Pesa moves whole shillings only")
    kes = amount_cents // 100
    if not minimum <= kes <= maximum:
        raise errors.InvalidRequest(f"amount must be KES {minimum}..{maximum}")
    return kes


def originator_conversation_id_for(withdrawal_id: uuid.UUID) -> str:
    """Deterministic B2C OriginatorConversationID of a PenPay withdrawal: a retry can never pay twice."""
    return f"PENPAY-{withdrawal_id.hex}"


class _Retryable(Exception):
    """Internal: a query attempt failed in a way worth repeating."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class DarajaClient:
    def __init__(
        self,
        config: DarajaConfig,
        *,
        session: aiohttp.ClientSession | None = None,
        token_cache: AccessTokens | None = None,
        now: Callable[[], datetime] | None = None,  # the STK Timestamp's clock
    ) -> None:
        self._cfg = config
        self._base = config.base_url.rstrip("/")
        self._session = session
        self._own_session = session is None
        self._tokens = token_cache
        self._now = now or SystemClock().now
        self._public_key: rsa.RSAPublicKey | None = None
        self._credential: str | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> DarajaClient:
        self._ensure_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    @property
    def shortcode(self) -> str:
        """The Lipa na M-Pesa shortcode STK pushes are paid to."""
        return self._cfg.shortcode

    @property
    def pull_shortcodes(self) -> tuple[str, ...]:
        """Every shortcode PenPay collects under, each with its own Pull Transactions list: the STK
        push shortcode and the paybill's (C2B) one, when the operator set a separate one."""
        return tuple(dict.fromkeys((self._cfg.shortcode, self._cfg.c2b_party)))

    @property
    def balance_shortcodes(self) -> tuple[str, ...]:
        """Every shortcode that holds part of the M-Pesa float, each with its own balance at Safaricom:
        the collecting ones (STK push, paybill) and the B2C one payouts leave from."""
        return tuple(dict.fromkeys((*self.pull_shortcodes, self._cfg.b2c_party)))

    @property
    def token_cache(self) -> AccessTokens:
        if self._tokens is None:
            cfg = self._cfg
            self._tokens = TokenCache.shared(
                self._base, cfg.consumer_key, cfg.consumer_secret, cfg.token_refresh_margin
            )
        return self._tokens

    # --- credentials ----------------------------------------------------------------------

    def security_credential(self) -> str:
        """SecurityCredential: as configured (the portal generates one), else made from the initiator
        password and the certificate once and reused."""
        if self._credential is None and self._cfg.security_credential:
            self._credential = self._cfg.security_credential
        if self._credential is None:
            if self._public_key is None:
                self._public_key = load_public_key(self._cfg.certificate_pem())
            self._credential = security_credential(self._public_key, self._cfg.initiator_password)
        return self._credential

    def _stk_auth(self) -> tuple[str, str]:
        """(Password, Timestamp) for this request: both from one Nairobi-time reading."""
        timestamp = stk_timestamp(self._now())
        return stk_password(self._cfg.shortcode, self._cfg.passkey, timestamp), timestamp

    def _callback(self, kind: CallbackKind) -> str:
        return callback_url(self._cfg.callback_base_url, kind, self._cfg.callback_secret)

    # --- public API -----------------------------------------------------------------------

    async def access_token(self) -> str:
        return await self.token_cache.get(self._fetch_token)

    async def stk_push(
        self,
        *,
        phone: str,
        amount_cents: int,
        account_reference: str,
        description: str = "PenPay",
        callback_url: str | None = None,
    ) -> StkPushAccepted:
        msisdn = normalise_msisdn(phone)
        amount = whole_shillings(amount_cents, minimum=1)
        if not account_reference or len(account_reference) > 12 or not account_reference.isalnum():
            raise errors.InvalidRequest("AccountReference must be 1-12 alphanumerics")
        if len(description) > 13:
            raise errors.InvalidRequest("TransactionDesc is at most 13 characters")
        cfg = self._cfg
        password, timestamp = self._stk_auth()
        body = {
            "BusinessShortCode": cfg.shortcode,
            "Password": password,
            "Timestamp": timestamp,
            "TransactionType": cfg.transaction_type,
            "Amount": amount,
            "PartyA": msisdn,
            "PartyB": cfg.till_number or cfg.shortcode,
            "PhoneNumber": msisdn,
            "CallBackURL": callback_url or self._callback(CallbackKind.STK),
            "AccountReference": account_reference,
            "TransactionDesc": description,
        }
        data, _ = await self._money_moving("stk_push", STK_PUSH, body)
        accepted = StkPushAccepted(
            merchant_request_id=_s(data, "MerchantRequestID"),
            checkout_request_id=_s(data, "CheckoutRequestID"),
            response_code=_s(data, "ResponseCode"),
            response_description=_s(data, "ResponseDescription"),
            customer_message=_opt(data, "CustomerMessage"),
        )
        log.info(
            "daraja stk_push accepted checkout_request_id=%s merchant_request_id=%s",
            accepted.checkout_request_id,
            accepted.merchant_request_id,
        )
        return accepted

    async def stk_query(
        self, checkout_request_id: str, *, merchant_request_id: str | None = None
    ) -> StkQueryResult:
        """STK Query. The answer must name the CheckoutRequestID asked about (and the MerchantRequestID,
        when the caller holds one and the answer gives one): otherwise `ForeignAnswer`, never a status."""

        async def attempt() -> StkQueryResult:
            password, timestamp = self._stk_auth()  # a fresh Timestamp per attempt
            body = {
                "BusinessShortCode": self._cfg.shortcode,
                "Password": password,
                "Timestamp": timestamp,
                "CheckoutRequestID": checkout_request_id,
            }
            try:
                data, raw = await self._call("stk_query", STK_QUERY, body, money_moving=False)
            except errors.DarajaError as exc:
                if exc.error_code == "500.001.1001":
                    text = exc.error_message.lower()
                    if "being processed" in text:
                        return StkQueryResult(StkQueryStatus.PENDING, checkout_request_id)
                    if "does not exist" in text:
                        return StkQueryResult(StkQueryStatus.UNKNOWN, checkout_request_id)
                raise
            # A status is only ever read from an answer about this very request.
            _require_same("stk_query", "CheckoutRequestID", checkout_request_id, data, raw)
            if merchant_request_id is not None and _opt(data, "MerchantRequestID") is not None:
                _require_same("stk_query", "MerchantRequestID", merchant_request_id, data, raw)
            code = _code(data.get("ResultCode"))
            status = StkQueryStatus.COMPLETED if code == "0" else StkQueryStatus.FAILED
            if code is None:
                raise errors.UnexpectedAnswer("invalid_response", "STK Query answer without ResultCode")
            return StkQueryResult(
                status=status,
                checkout_request_id=checkout_request_id,
                merchant_request_id=_opt(data, "MerchantRequestID"),
                result_code=code,
                result_desc=_opt(data, "ResultDesc"),
            )

        result = await self._retrying("stk_query", attempt)
        log.info(
            "daraja stk_query checkout_request_id=%s status=%s result_code=%s",
            checkout_request_id,
            result.status,
            result.result_code,
        )
        return result

    async def b2c_payment(
        self,
        *,
        originator_conversation_id: str,
        phone: str,
        amount_cents: int,
        remarks: str = "PenPay withdrawal",
        occasion: str | None = None,
        command_id: str = "BusinessPayment",
    ) -> RequestAccepted:
        """B2C v3. Re-sending is only ever done by the caller, with the same originator_conversation_id;
        `DuplicateOriginatorConversationID` then means an earlier attempt got through."""
        if not originator_conversation_id or len(originator_conversation_id) > 64:
            raise errors.InvalidRequest("OriginatorConversationID must be 1-64 characters")
        if not 2 <= len(remarks) <= 100:
            raise errors.InvalidRequest("Remarks must be 2-100 characters")
        cfg = self._cfg
        body: dict[str, Any] = {
            "OriginatorConversationID": originator_conversation_id,
            "InitiatorName": cfg.initiator_name,
            "SecurityCredential": self.security_credential(),
            "CommandID": command_id,
            "Amount": whole_shillings(amount_cents, minimum=10),
            "PartyA": cfg.b2c_party,
            "PartyB": normalise_msisdn(phone),
            "Remarks": remarks,
            "QueueTimeOutURL": self._callback(CallbackKind.B2C_TIMEOUT),
            "ResultURL": self._callback(CallbackKind.B2C_RESULT),
        }
        if occasion:
            body["Occassion"] = occasion  # sic: the portal's B2C v3 spelling
        data, raw = await self._money_moving(
            "b2c", B2C, body, originator_conversation_id=originator_conversation_id
        )
        # The answer must be about our OriginatorConversationID; ours, never the server's, is what we
        # report and log from here on.
        _require_same("b2c", "OriginatorConversationID", originator_conversation_id, data, raw)
        accepted = _accepted(data, ours=originator_conversation_id)
        log.info(
            "daraja b2c accepted originator_conversation_id=%s conversation_id=%s",
            accepted.originator_conversation_id,
            accepted.conversation_id,
        )
        return accepted

    async def transaction_status(
        self,
        *,
        originator_conversation_id: str | None = None,
        transaction_id: str | None = None,
        remarks: str = "PenPay reconciliation",
        occasion: str | None = None,
        result_kind: CallbackKind = CallbackKind.STATUS_RESULT,
    ) -> RequestAccepted:
        """Ask for the status of a B2C (by OriginatorConversationID) or any receipt (TransactionID).
        `result_kind`: where the answer goes (a reversal's status goes to the reversal endpoints).
        The answer arrives at the status ResultURL; `occasion` defaults to the id asked about, so the result
        can be correlated even when M-Pesa omits it from ResultParameters."""
        if not originator_conversation_id and not transaction_id:
            raise errors.InvalidRequest("need an OriginatorConversationID or a TransactionID")
        cfg = self._cfg
        body: dict[str, Any] = {
            "Initiator": cfg.initiator_name,
            "SecurityCredential": self.security_credential(),
            "CommandID": "TransactionStatusQuery",
            "PartyA": cfg.b2c_party,
            "IdentifierType": "4",
            "ResultURL": self._callback(result_kind),
            "QueueTimeOutURL": self._callback(CallbackKind.STATUS_TIMEOUT),
            "Remarks": remarks,
            "Occasion": occasion or originator_conversation_id or transaction_id,
        }
        if transaction_id:
            body["TransactionID"] = transaction_id
        if originator_conversation_id:
            body["OriginalConversationID"] = originator_conversation_id

        async def attempt() -> RequestAccepted:
            data, _ = await self._call("transaction_status", TRANSACTION_STATUS, body, money_moving=False)
            return _accepted(data)

        accepted = await self._retrying("transaction_status", attempt)
        log.info(
            "daraja transaction_status accepted for originator_conversation_id=%s transaction_id=%s "
            "(request conversation_id=%s)",
            originator_conversation_id,
            transaction_id,
            accepted.conversation_id,
        )
        return accepted

    async def reversal(
        self,
        *,
        originator_conversation_id: str,
        transaction_id: str,
        amount_cents: int,
        remarks: str = "PenPay refund",
    ) -> RequestAccepted:
        """Reversal of a C2B payment (its TransID) back to its payer. Sent once: a timeout is
        `OutcomeUnknown`, resolved by Transaction Status about `originator_conversation_id`.

        The public contract (developer.safaricom.co.ke/APIs/Reversal, and every SDK we read) has no
        OriginatorConversationID in the request; PenPay sends its own anyway, as B2C v3 takes one,
        and in `Occasion` (echoed in results' ReferenceData), so that the request has one id of
        ours from before it leaves. The answer must name it (inferred: if production Daraja named
        only an id of its own, the answer is a ForeignAnswer, the refund waits as an unknown
        outcome and a person settles it; nothing is paid twice either way, as M-Pesa reverses a
        TransID once)."""
        if not originator_conversation_id or len(originator_conversation_id) > 64:
            raise errors.InvalidRequest("OriginatorConversationID must be 1-64 characters")
        if not transaction_id or len(transaction_id) > 32 or not transaction_id.isalnum():
            raise errors.InvalidRequest("TransactionID must be an M-Pesa receipt")
        if not 2 <= len(remarks) <= 100:
            raise errors.InvalidRequest("Remarks must be 2-100 characters")
        cfg = self._cfg
        body: dict[str, Any] = {
            "Initiator": cfg.initiator_name,
            "SecurityCredential": self.security_credential(),
            "CommandID": "TransactionReversal",
            "TransactionID": transaction_id,
            "Amount": whole_shillings(amount_cents, minimum=1),
            "ReceiverParty": cfg.c2b_party,
            "RecieverIdentifierType": REVERSAL_RECEIVER_TYPE,  # sic: Daraja's spelling on the wire
            "ResultURL": self._callback(CallbackKind.REVERSAL_RESULT),
            "QueueTimeOutURL": self._callback(CallbackKind.REVERSAL_TIMEOUT),
            "Remarks": remarks,
            "Occasion": originator_conversation_id,
            "OriginatorConversationID": originator_conversation_id,
        }
        data, raw = await self._money_moving(
            "reversal", REVERSAL, body, originator_conversation_id=originator_conversation_id
        )
        _require_same("reversal", "OriginatorConversationID", originator_conversation_id, data, raw)
        accepted = _accepted(data, ours=originator_conversation_id)
        log.info(
            "daraja reversal accepted originator_conversation_id=%s conversation_id=%s transaction_id=%s",
            accepted.originator_conversation_id,
            accepted.conversation_id,
            transaction_id,
        )
        return accepted

    async def account_balance(
        self, *, shortcode: str | None = None, remarks: str = "PenPay balance"
    ) -> RequestAccepted:
        """Account Balance of one shortcode (default: the B2C one); the result comes by callback."""
        cfg = self._cfg
        body = {
            "Initiator": cfg.initiator_name,
            "SecurityCredential": self.security_credential(),
            "CommandID": "AccountBalance",
            "PartyA": shortcode or cfg.b2c_party,
            "IdentifierType": "4",
            "Remarks": remarks,
            "QueueTimeOutURL": self._callback(CallbackKind.BALANCE_TIMEOUT),
            "ResultURL": self._callback(CallbackKind.BALANCE_RESULT),
        }

        async def attempt() -> RequestAccepted:
            data, _ = await self._call("account_balance", ACCOUNT_BALANCE, body, money_moving=False)
            return _accepted(data)

        return await self._retrying("account_balance", attempt)

    async def register_c2b_urls(self) -> C2BUrlsRegistered:
        """Register the paybill's ValidationURL and ConfirmationURL (C2B Register URL). Safe to repeat:
        it moves no money; in production Safaricom keeps the first registration until it is deleted on
        the portal, so a change of URL needs that step too (README)."""
        cfg = self._cfg
        if cfg.c2b_response_type not in ("Completed", "Cancelled"):
            raise errors.InvalidRequest("c2b_response_type must be Completed or Cancelled")
        body = {
            "ShortCode": cfg.c2b_party,
            "ResponseType": cfg.c2b_response_type,
            "ConfirmationURL": self._callback(CallbackKind.C2B_CONFIRMATION),
            "ValidationURL": self._callback(CallbackKind.C2B_VALIDATION),
        }

        async def attempt() -> C2BUrlsRegistered:
            data, _ = await self._call("c2b_register", C2B_REGISTER_URL, body, money_moving=False)
            code = _code(data.get("ResponseCode"))
            if code != "0":
                raise errors.DarajaError(
                    code or "", str(data.get("ResponseDescription", ""))[:255], None, 200
                )
            return C2BUrlsRegistered(
                shortcode=cfg.c2b_party,
                response_type=cfg.c2b_response_type,
                response_description=_opt(data, "ResponseDescription") or "",
            )

        return await self._retrying("c2b_register", attempt)

    async def pull_register(
        self, *, nominated_number: str, callback_url: str, shortcode: str | None = None
    ) -> str:
        """Register a shortcode (default: the STK one) for Pull Transactions (once); the ResponseRefID."""
        body = register_body(shortcode or self._cfg.shortcode, nominated_number, callback_url)

        async def attempt() -> str:
            data, _ = await self._call("pull_register", PULL_REGISTER, body, money_moving=False)
            return parse_register(data)

        return await self._retrying("pull_register", attempt)

    async def pull_transactions(
        self, start: datetime, end: datetime, *, shortcode: str | None = None
    ) -> list[PulledTransaction]:
        """Every C2B payment of a shortcode (default: the STK one) in [start, end], all pages. A page
        answered with HTTP 200 and a ResponseCode other than 1000 raises `PullFailed`: never read as
        "nothing to import"."""
        found: list[PulledTransaction] = []
        while True:
            body = query_body(shortcode or self._cfg.shortcode, start, end, len(found))

            async def attempt(body: dict[str, str] = body) -> list[PulledTransaction]:
                data, _ = await self._call("pull_query", PULL_QUERY, body, money_moving=False)
                return list(parse_query(data).transactions)

            page = await self._retrying("pull_query", attempt)
            if not page:
                return found
            found.extend(page)

    # --- plumbing -------------------------------------------------------------------------

    async def _retrying(
        self, api: str, attempt: Callable[[], Awaitable[T]], attempts: int | None = None
    ) -> T:
        cfg = self._cfg

        async def wrapped() -> T:
            try:
                return await attempt()
            except (errors.SpikeArrest, errors.TransportError) as exc:
                raise _Retryable(exc) from None
            except errors.DarajaError as exc:
                if exc.error_code == "500.003.1001" or (exc.http_status or 0) >= 502:
                    raise _Retryable(exc) from None
                raise

        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(attempts or cfg.query_attempts, 1)),
            wait=wait_random_exponential(multiplier=cfg.retry_initial_wait, max=cfg.retry_max_wait),
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            before_sleep=lambda rs: log.warning(
                "daraja %s attempt %d failed (%s); retrying", api, rs.attempt_number, _outcome_text(rs)
            ),
            reraise=True,
        )
        try:
            async for attempt_ctx in retrying:
                with attempt_ctx:
                    return await wrapped()
        except _Retryable as exc:
            raise exc.error from None
        raise AssertionError("unreachable")

    async def _money_moving(
        self, api: str, path: str, body: dict[str, Any], *, originator_conversation_id: str | None = None
    ) -> tuple[dict[str, Any], bytes]:
        try:
            return await self._call(api, path, body, money_moving=True)
        except errors.OutcomeUnknown as exc:
            raise errors.OutcomeUnknown(
                api, exc.reason, originator_conversation_id=originator_conversation_id
            ) from None

    async def _call(
        self, api: str, path: str, body: dict[str, Any], *, money_moving: bool
    ) -> tuple[dict[str, Any], bytes]:
        """One authorised POST; on an invalid-token answer, refresh the token and send it once more."""
        for refreshed in (False, True):
            token = await self.access_token()
            try:
                return await self._post(api, path, body, token, money_moving=money_moving)
            except errors.DarajaError as exc:
                if exc.error_code in INVALID_TOKEN_CODES and not refreshed:
                    log.warning("daraja %s: %s; refreshing the access token", api, exc.error_code)
                    self.token_cache.invalidate(token)
                    continue
                if exc.error_code in INVALID_TOKEN_CODES:
                    raise errors.InvalidAccessToken(
                        exc.error_code, exc.error_message, exc.request_id, exc.http_status
                    ) from None
                raise
        raise AssertionError("unreachable")

    async def _post(
        self, api: str, path: str, body: dict[str, Any], token: str, *, money_moving: bool
    ) -> tuple[dict[str, Any], bytes]:
        """The answer as a JSON object, with its bytes (the evidence of what was answered)."""
        session = self._ensure_session()
        started = time.monotonic()
        try:
            async with session.post(
                self._base + path,
                json=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                timeout=self._timeout(),
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except aiohttp.ClientConnectorError as exc:
            # The TCP connection was never made, so nothing was sent: safe for any call.
            log.warning("daraja %s: cannot connect (%s)", api, type(exc).__name__)
            raise errors.DarajaUnavailable(f"{api}: cannot connect to Daraja") from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else f"connection lost ({type(exc).__name__})"
            log.warning("daraja %s: %s after %.1fs", api, reason, time.monotonic() - started)
            if money_moving:
                raise errors.OutcomeUnknown(api, reason) from None
            raise errors.TransportError(f"{api}: {reason}") from None
        elapsed_ms = (time.monotonic() - started) * 1000
        data = _json_object(raw)
        if status == 200 and data is not None and "errorCode" not in data:
            log.debug("daraja %s: HTTP 200 in %.0f ms", api, elapsed_ms)
            return data, raw
        error = self._error(status, data, raw)
        log.warning(
            "daraja %s: HTTP %d %s %s (requestId %s) in %.0f ms",
            api,
            status,
            error.error_code,
            error.error_message,
            error.request_id,
            elapsed_ms,
        )
        if money_moving and (error.error_code == "500.003.1001" or (data is None and status >= 500)):
            # An internal error after the gateway took the request: M-Pesa may have acted on it.
            raise errors.OutcomeUnknown(api, f"HTTP {status} {error.error_code}")
        raise error

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self._cfg.request_timeout, connect=self._cfg.connect_timeout)

    def _scrub(self, text: str) -> str:
        text = _TOKEN_IN_MESSAGE.sub(r"\1***", text)
        cfg = self._cfg
        secrets = [*self.token_cache.known_tokens(), cfg.consumer_secret, cfg.passkey, cfg.initiator_password]
        if self._credential:
            secrets.append(self._credential)
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text[:300]

    def _error(self, status: int, data: dict[str, Any] | None, raw: bytes) -> errors.DarajaError:
        if data is not None and "errorCode" in data:
            code = str(data.get("errorCode") or f"HTTP{status}")
            message = self._scrub(str(data.get("errorMessage") or ""))
            request_id = data.get("requestId")
            rid = str(request_id) if request_id is not None else None
        else:
            # Not Daraja's error envelope (an HTML page, an empty body, some other JSON): not its own
            # answer, so not its business refusal either.
            code = f"HTTP{status}"
            message = self._scrub(raw[:200].decode("utf-8", "replace")) if raw else ""
            return errors.UnexpectedAnswer(code, message, None, status)
        cls: type[errors.DarajaError] = errors.DarajaError
        lowered = message.lower()
        if code == "500.003.03":
            cls = errors.QuotaViolation
        elif code == "500.003.02":
            cls = errors.SpikeArrest
        elif code == "500.002.1001":
            cls = errors.DuplicateOriginatorConversationID
        elif code == "500.001.1001" and "lock subscriber" in lowered:
            cls = errors.SubscriberLocked
        elif code == "500.001.1001" and (
            "wrong credentials" in lowered or "merchant does not exist" in lowered
        ):
            cls = errors.DarajaConfigurationError
        return cls(code, message, rid, status)

    async def _fetch_token(self) -> tuple[str, float]:
        cfg = self._cfg
        basic = base64.b64encode(f"{cfg.consumer_key}:{cfg.consumer_secret}".encode()).decode("ascii")

        async def attempt() -> tuple[str, float]:
            session = self._ensure_session()
            try:
                async with session.get(
                    self._base + OAUTH,
                    params={"grant_type": "client_credentials"},
                    headers={"Authorization": f"Basic {basic}"},
                    timeout=self._timeout(),
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
            except aiohttp.ClientConnectorError:
                raise errors.DarajaUnavailable("oauth: cannot connect to Daraja") from None
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise errors.TransportError(f"oauth: {type(exc).__name__}") from None
            data = _json_object(raw)
            if status == 200 and data is not None and data.get("access_token"):
                try:
                    expires_in = float(int(str(data.get("expires_in", "3599")).strip()))
                except ValueError:
                    expires_in = 3599.0
                return str(data["access_token"]), expires_in
            error = self._error(status, data, raw)
            if status >= 500:
                raise error
            raise errors.AuthenticationFailed(error.error_code, error.error_message, error.request_id, status)

        token, expires_in = await self._retrying("oauth", attempt, cfg.token_attempts)
        log.info("daraja access token obtained (expires in %ds)", int(expires_in))
        return token, expires_in


# --- helpers ----------------------------------------------------------------------------


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _code(value: Any) -> str | None:
    """ResultCode as text: 0, "0" and 0.0 are all "0"; non-numeric codes (SFC_IC0003) stay as they are."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _s(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        raise errors.UnexpectedAnswer("invalid_response", f"Daraja answer without {key}")
    return str(value)


def _opt(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if value is None else str(value)


def _require_same(api: str, key: str, ours: str, data: dict[str, Any], raw: bytes) -> None:
    """The answer names `ours` under `key`, or it is about another request (a missing id included:
    Daraja always sends it, and an answer that names nothing cannot be matched to ours)."""
    theirs = _opt(data, key)
    if theirs is None or theirs.strip() != ours:
        log.warning("daraja %s: answer names %s %r, not ours %r", api, key, theirs, ours)
        raise errors.ForeignAnswer(api, key, ours, theirs, raw)


def _accepted(data: dict[str, Any], ours: str | None = None) -> RequestAccepted:
    return RequestAccepted(
        originator_conversation_id=ours or _opt(data, "OriginatorConversationID") or "",
        conversation_id=_s(data, "ConversationID"),
        response_code=_s(data, "ResponseCode"),
        response_description=_opt(data, "ResponseDescription") or "",
    )


def _outcome_text(retry_state: Any) -> str:
    outcome = retry_state.outcome
    if outcome is None or not outcome.failed:
        return "ok"
    exc = outcome.exception()
    inner = exc.error if isinstance(exc, _Retryable) else exc
    return f"{type(inner).__name__}: {inner}"

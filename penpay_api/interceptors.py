"""grpc.aio server interceptors, outermost first as the server installs them:

1. ObservabilityInterceptor: opens the call's CallState (request id, client IP), and when the
   call ends logs one line (method, grpc_code, duration, request id; never a request field or
   metadata value) and records the Prometheus counter and histogram.
2. ErrorMappingInterceptor: any exception from the layers inside becomes a status with
   google.rpc details (penpay_api.errors); unexpected ones become INTERNAL and are logged here,
   with their traceback, and nothing of them reaches the client.
3. AuthenticationInterceptor: `authorization: Bearer <jwt>` verified (RS256) for every method
   that is not public, and a user's session still open (penpay_api.sessions: logout ends it at
   once); the principal goes into the CallState. A method whose use case reads the user anyway
   (`sessions_checked_by_use_case`: InitiateDeposit) has the session checked in that one read
   instead of a read of its own: the session id goes into the CallState for the servicer to hand on.
4. AuthorisationInterceptor: operator services need a staff role, and the role their method
   needs (AccessPolicy.roles_for); every other
   authenticated method needs a user's token (the servicer then acts on that user only).
5. IdempotencyInterceptor (penpay_api.idempotency): the money methods.

Only unary-unary methods are wrapped; the streaming methods served here (health Watch,
reflection) are public and pass through untouched.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import grpc
import structlog

from domain.shared.clock import Clock
from penpay_api import metrics
from penpay_api.auth import STAFF_ROLES, Access, AccessPolicy, RoleAwareAccessTokens
from penpay_api.context import (
    REQUEST_ID_KEY,
    CallState,
    client_ip_from,
    close_call,
    current_call,
    metadata_value,
    open_call,
    request_id_from,
)
from penpay_api.errors import RpcFailure, to_failure
from penpay_api.sessions import SessionCheck
from security.proxies import TrustedProxies

log = structlog.get_logger("penpay.api")

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


def replace_unary(
    handler: grpc.RpcMethodHandler, behavior: Behavior, **overrides: Any
) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=overrides.get("request_deserializer", handler.request_deserializer),
        response_serializer=overrides.get("response_serializer", handler.response_serializer),
    )


# The handler an interceptor made for each method, per interceptor: the wrapping is the same for
# every call of a method (the services are fixed when the server starts, and no interceptor here
# looks at a call's metadata before its behaviour runs), so it is made once instead of on every
# call; a remembered handler also spares the calls into the interceptors inside this one.
_HANDLERS: weakref.WeakKeyDictionary[object, dict[str, grpc.RpcMethodHandler]] = weakref.WeakKeyDictionary()


def handlers_of(interceptor: object) -> dict[str, grpc.RpcMethodHandler]:
    return _HANDLERS.setdefault(interceptor, {})


def remember(
    interceptor: object, method: str, handler: grpc.RpcMethodHandler | None
) -> grpc.RpcMethodHandler | None:
    """`handler`, remembered for `method` when there is one (an unknown method is looked up anew)."""
    if handler is not None:
        handlers_of(interceptor)[method] = handler
    return handler


class UnaryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Wraps the behaviour of the unary-unary methods `applies()` selects with `around()`."""

    def applies(self, method: str) -> bool:
        return True

    async def around(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        raise NotImplementedError

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        known = handlers_of(self).get(method)
        if known is not None:
            return known
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or not self.applies(method):
            return remember(self, method, handler)
        inner: Behavior = handler.unary_unary

        async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await self.around(method, inner, request, context)

        return remember(self, method, replace_unary(handler, behavior))


class ObservabilityInterceptor(UnaryInterceptor):
    def __init__(self, *, trusted_proxies: TrustedProxies | Collection[str] = ()) -> None:
        self._trusted = TrustedProxies.of(trusted_proxies)

    async def around(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        metadata = context.invocation_metadata()
        state = CallState(
            method=method,
            request_id=request_id_from(metadata),
            client_ip=client_ip_from(context.peer(), metadata, self._trusted),
        )
        token = open_call(state)
        started = time.perf_counter()
        try:
            await context.send_initial_metadata(((REQUEST_ID_KEY, state.request_id),))
            response = await behavior(request, context)
            return response
        except asyncio.CancelledError:
            state.code = grpc.StatusCode.CANCELLED
            raise
        except BaseException:
            if state.code is grpc.StatusCode.OK:  # aborted by something that did not tell us
                state.code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        finally:
            seconds = time.perf_counter() - started
            code = state.code.name
            metrics.observe(method, code, seconds)
            principal = state.principal
            fields: dict[str, Any] = {
                "method": method,
                # not "code": the log redactor hides that key (one-time codes are called so)
                "grpc_code": code,
                "duration_ms": round(seconds * 1000, 2),
                "request_id": state.request_id,
            }
            if principal is not None:
                fields["subject"] = principal.subject
            if state.reason:
                fields["reason"] = state.reason
            if state.replayed:
                fields["idempotent_replay"] = True
            log.info("rpc", **fields)
            close_call(token)


class ErrorMappingInterceptor(UnaryInterceptor):
    def __init__(self, *, field_aliases: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._aliases = dict(field_aliases or {})

    async def around(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        try:
            return await behavior(request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            state = current_call()
            failure = to_failure(exc, request_id=state.request_id, field_aliases=self._aliases.get(method))
            if failure.code is grpc.StatusCode.INTERNAL and not isinstance(exc, RpcFailure):
                log.error(
                    "rpc.internal_error",
                    method=method,
                    request_id=state.request_id,
                    error_type=type(exc).__name__,
                    exc_info=exc,
                )
            state.code = failure.code
            state.reason = failure.reason
            await context.abort(failure.code, failure.message, trailing_metadata=failure.trailing_metadata)
            raise AssertionError("abort returns only by raising") from None


def _unauthenticated(message: str, reason: str = "UNAUTHENTICATED") -> RpcFailure:
    return RpcFailure.build(grpc.StatusCode.UNAUTHENTICATED, message, reason=reason)


class AuthenticationInterceptor(UnaryInterceptor):
    def __init__(
        self,
        tokens: RoleAwareAccessTokens,
        policy: AccessPolicy,
        clock: Clock,
        sessions: SessionCheck | None = None,
        sessions_checked_by_use_case: Collection[str] = (),
    ) -> None:
        self._tokens = tokens
        self._policy = policy
        self._clock = clock
        self._sessions = sessions
        self.sessions_checked_by_use_case = set(sessions_checked_by_use_case)

    def applies(self, method: str) -> bool:
        return self._policy.access(method) is not Access.PUBLIC

    async def around(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        header = metadata_value(context.invocation_metadata(), "authorization")
        if not header:
            raise _unauthenticated("an access token is required (authorization: Bearer <token>)")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated("the authorization metadata must be 'Bearer <access token>'")
        now = self._clock.now()
        principal = self._tokens.verify_principal(token.strip(), now=now)
        state = current_call()
        # Operator tokens open no session (no refresh family); they simply expire.
        if self._sessions is not None and principal.user_id is not None:
            if method in self.sessions_checked_by_use_case:
                state.session_to_check = principal.session_id
            elif not await self._sessions.is_open(principal.session_id, now=now):
                raise _unauthenticated("this session has ended; sign in again", reason="SESSION_ENDED")
        state.principal = principal
        return await behavior(request, context)


# Records a refused staff call in the audit chain: (actor, method, reason, details).
RefusalAudit = Callable[[str, str, str, Mapping[str, Any]], Awaitable[None]]


class AuthorisationInterceptor(UnaryInterceptor):
    def __init__(self, policy: AccessPolicy, refusal_audit: RefusalAudit | None = None) -> None:
        self._policy = policy
        self._audit = refusal_audit

    async def _refuse(self, method: str, principal: Any, failure: RpcFailure, needed: str) -> RpcFailure:
        """A call to a staff service refused for its roles is audited (who, which method, why)
        before the refusal is answered; an audit that cannot be written is logged, and the
        call is refused all the same."""
        if self._audit is not None:
            subject = principal.subject
            actor = subject if subject.startswith("operator:") else f"user:{subject}"
            details = {"method": method, "required_role": needed, "roles": sorted(principal.roles)}
            try:
                await self._audit(actor, method, failure.reason or "", details)
            except Exception as error:
                log.error("access.refusal_not_audited", method=method, error_type=type(error).__name__)
        return failure

    def applies(self, method: str) -> bool:
        return self._policy.access(method) is not Access.PUBLIC

    async def around(
        self, method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        principal = current_call().principal
        if principal is None:  # the authentication layer is missing: refuse rather than guess
            raise _unauthenticated("not authenticated")
        access = self._policy.access(method)
        if access is Access.OPERATOR:
            if not principal.roles & STAFF_ROLES:
                failure = RpcFailure.build(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "this call is for PenPay operators",
                    reason="OPERATOR_ROLE_REQUIRED",
                    metadata={"required_role": "operator"},
                )
                raise await self._refuse(method, principal, failure, "operator")
            needed = self._policy.roles_for(method)
            if not principal.roles & needed:
                failure = RpcFailure.build(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"this call needs the role {' or '.join(sorted(needed))}",
                    reason="ROLE_REQUIRED",
                    metadata={"required_role": ",".join(sorted(needed))},
                )
                raise await self._refuse(method, principal, failure, ",".join(sorted(needed)))
        if access is Access.USER and principal.user_id is None:
            raise RpcFailure.build(
                grpc.StatusCode.PERMISSION_DENIED,
                "this call needs a user's access token",
                reason="USER_TOKEN_REQUIRED",
            )
        return await behavior(request, context)

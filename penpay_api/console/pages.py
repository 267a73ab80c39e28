"""The console's pages and actions (aiohttp handlers). Who may see and do what is the API's
decision: each handler calls OpsService with the caller's token and shows the answer, or the
refusal. State-changing requests follow the bridge's rules: authenticated by cookie, they carry
X-CSRF-Token equal to the penpay_csrf cookie (static/console.js adds it to htmx requests)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

import grpc
import jinja2
from aiohttp import web
from google.protobuf.message import Message

from application.reconciliation.export import CSV_COLUMNS
from penpay.ops.v1 import ops_pb2 as pb
from penpay_api.console import security, views
from penpay_api.http import cookies, errors
from penpay_api.http.transcode import dumps

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPS = "penpay.ops.v1.OpsService"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
_STATIC_NAME = re.compile(r"(vendor/)?[a-z0-9][a-z0-9._-]*\.(js|css|png)")
_TOKEN = re.compile(r"[A-Za-z0-9_.-]{20,4096}")
# Request storage key (aiohttp >= 3.13 prefers typed keys; a string works everywhere).
_AUTH: Any = (
    web.RequestKey("penpay_console_auth", str) if hasattr(web, "RequestKey") else "penpay_console_auth"
)
DEFAULT_THRESHOLDS = {"MPESA_FLOAT": ("KES", 5_000_000), "DERIV_AGENT_FLOAT": ("USD", 100_000)}


class ExportInterrupted(RuntimeError):
    """A download failed after its first bytes were sent (not an answer the guard can render)."""


class Refused(Exception):
    """The API refused the caller (no staff token, or a user's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("penpay_api.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["dt"] = lambda d: d.strftime("%Y-%m-%d %H:%M:%S UTC") if d else ""
    env.globals["hints"] = views.ACTION_HINT
    return env


class Console:
    def __init__(self, bridge: Any, *, float_thresholds: Mapping[str, tuple[str, int]] | None = None) -> None:
        self.bridge = bridge
        self.policy: cookies.CookiePolicy = bridge.config.cookie_policy
        self.thresholds = dict(float_thresholds or DEFAULT_THRESHOLDS)
        self.env = _env()
        self.static = resources.files("penpay_api.console") / "static"

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/docs", self.docs)
        r.add_get("/static/console/{name:.+}", self.static_file)
        r.add_get("/ops", self.to_dashboard)
        r.add_get("/ops/", self.guarded(self.dashboard))
        r.add_get("/ops/login", self.login_page)
        r.add_post("/ops/login", self.login)
        r.add_post("/ops/logout", self.logout)
        r.add_get("/ops/queue", self.guarded(self.queue))
        r.add_get("/ops/search", self.guarded(self.search))
        r.add_get("/ops/transactions/{tx_id}", self.guarded(self.transaction))
        r.add_post("/ops/transactions/{tx_id}/proposals", self.guarded(self.propose, write=True))
        r.add_post("/ops/transactions/{tx_id}/reveal", self.guarded(self.reveal, write=True))
        r.add_post("/ops/actions/{action_id}/approve", self.guarded(self.approve, write=True))
        r.add_post("/ops/actions/{action_id}/reject", self.guarded(self.reject, write=True))
        r.add_get("/ops/auditor", self.guarded(self.auditor))
        r.add_get("/ops/reconciliation", self.guarded(self.reconciliation))
        r.add_get("/ops/reconciliation/{run_id}", self.guarded(self.reconciliation_run))
        r.add_get("/ops/reconciliation/{run_id}/items.csv", self.guarded(self.reconciliation_csv))
        r.add_post("/ops/reconciliation/{run_id}/close", self.guarded(self.reconciliation_close, write=True))
        for verb in ("propose_write_off", "approve_write_off", "reject_write_off"):
            r.add_post(
                f"/ops/reconciliation/{{run_id}}/{verb}",
                self.guarded(self.reconciliation_write_off, write=True),
            )
        r.add_get("/ops/paybill", self.guarded(self.paybill))
        for verb, handler in (
            ("propose", self.paybill_propose),
            ("approve", self.paybill_approve),
            ("reject", self.paybill_reject),
            ("propose_refund", self.paybill_propose_refund),
            ("approve_refund", self.paybill_approve_refund),
            ("reject_refund", self.paybill_reject_refund),
        ):
            r.add_post(f"/ops/paybill/{{trans_id}}/{verb}", self.guarded(handler, write=True))
        r.add_get("/ops/kyc", self.guarded(self.kyc))
        r.add_post("/ops/kyc", self.guarded(self.kyc_propose, write=True))
        for verb, handler in (
            ("approve", self.kyc_approve),
            ("reject", self.kyc_reject),
            ("reveal", self.kyc_reveal),
        ):
            r.add_post(f"/ops/kyc/{{attestation_id}}/{verb}", self.guarded(handler, write=True))

    async def to_dashboard(self, request: web.Request) -> web.StreamResponse:
        return self._redirect("/ops/")

    # -- plumbing ----------------------------------------------------------------------------

    def render(self, template: str, *, status: int = 200, **context: Any) -> web.Response:
        html = self.env.get_template(template).render(**context)
        response = web.Response(status=status, text=html, content_type="text/html")
        security.harden(response)
        return response

    @staticmethod
    def _redirect(location: str, request: web.Request | None = None) -> web.Response:
        if request is not None and request.headers.get("HX-Request"):
            response = web.Response(status=200, headers={"HX-Redirect": location})
        else:
            response = web.Response(status=303, headers={"Location": location})
        security.harden(response)
        return response

    def _authorization(self, request: web.Request) -> tuple[str | None, bool]:
        explicit = request.headers.get("Authorization")
        if explicit is not None:
            return explicit, False
        token = request.cookies.get(self.policy.access_cookie)
        return (f"Bearer {token}", True) if token else (None, False)

    @staticmethod
    def _wants_json(request: web.Request) -> bool:
        accept = request.headers.get("Accept", "")
        return "application/json" in accept and "text/html" not in accept

    def refusal(self, request: web.Request, status: int, message: str) -> web.Response:
        if self._wants_json(request):
            code = grpc.StatusCode.PERMISSION_DENIED if status == 403 else grpc.StatusCode.UNAUTHENTICATED
            response = web.Response(
                status=status,
                body=dumps(errors.error_body(code, message)),
                content_type="application/problem+json",
            )
            security.harden(response)
            return response
        return self.render("refused.html", status=status, message=message, staff=None)

    def guarded(self, page: Handler, *, write: bool = False) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            authorization, from_cookie = self._authorization(request)
            if authorization is None:
                if self._wants_json(request):
                    return self.refusal(request, 401, "a staff access token is required")
                return self._redirect("/ops/login", request)
            if (
                write
                and from_cookie
                and not cookies.csrf_valid(self.policy, request.headers, request.cookies)
            ):
                return self.refusal(request, 403, "CSRF token missing or invalid")
            request[_AUTH] = authorization
            try:
                return await page(request)
            except Refused as refused:
                if refused.status == 401 and not self._wants_json(request):
                    return self._redirect("/ops/login", request)
                return self.refusal(request, refused.status, refused.message)
            except grpc.aio.AioRpcError as exc:  # the API is down or failed: say so, keep the page
                status = 503 if exc.code() in _UNAVAILABLE else 502
                return self.render("unavailable.html", status=status, message=exc.details() or "", staff=True)

        return handle

    async def rpc(self, request: web.Request, method: str, message: Message) -> Any:
        """An OpsService call as the caller; a refusal of the caller becomes Refused."""
        try:
            return await self.bridge.call(
                f"{OPS}/{method}", message, authorization=request[_AUTH], request=request
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNAUTHENTICATED:
                raise Refused(401, exc.details() or "sign in again") from exc
            if exc.code() is grpc.StatusCode.PERMISSION_DENIED and method in _READS:
                raise Refused(403, exc.details() or "staff only") from exc
            raise

    # -- static files and docs ---------------------------------------------------------------

    async def static_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if not _STATIC_NAME.fullmatch(name):
            raise web.HTTPNotFound()
        resource = self.static.joinpath(*name.split("/"))
        try:
            body = resource.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise web.HTTPNotFound() from exc
        suffix = name[name.rfind(".") :]
        response = web.Response(body=body, content_type=STATIC_TYPES[suffix])
        security.harden(response, private=False)
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response

    async def docs(self, request: web.Request) -> web.StreamResponse:
        html = self.env.get_template("docs.html").render()
        response = web.Response(text=html, content_type="text/html")
        security.harden(response, csp=security.DOCS_CSP, private=False)
        return response

    # -- signing in --------------------------------------------------------------------------

    def _csrf_cookie(self, response: web.StreamResponse) -> str:
        value = secrets.token_urlsafe(32)
        response.set_cookie(
            self.policy.csrf_cookie,
            value,
            path=self.policy.path,
            secure=self.policy.secure,
            httponly=False,
            samesite="Strict",
        )
        return value

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        response = self.render("login.html", error=None, staff=None)
        if not request.cookies.get(self.policy.csrf_cookie):
            self._csrf_cookie(response)  # double-submit: the sign-in request must echo it
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        """A staff token (`penpay api --issue-operator-token`) becomes the session cookie. Like any
        state-changing request it must carry X-CSRF-Token equal to the penpay_csrf cookie (a page
        of another site can neither read that cookie nor send the header)."""
        if not cookies.csrf_valid(self.policy, request.headers, request.cookies):
            return self.refusal(request, 403, "CSRF token missing or invalid")
        form = await request.post()
        token = str(form.get("token", "")).strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        if not _TOKEN.fullmatch(token):
            return self.render("login.html", status=400, error="That is not an access token.", staff=None)
        request[_AUTH] = f"Bearer {token}"
        try:
            await self.rpc(request, "GetOutboxStats", pb.GetOutboxStatsRequest())
        except Refused as refused:
            return self.render("login.html", status=refused.status, error=refused.message, staff=None)
        response = self._redirect("/ops/", request)
        response.set_cookie(
            self.policy.access_cookie,
            token,
            path=self.policy.path,
            secure=self.policy.secure,
            httponly=True,
            samesite="Strict",
        )
        self._csrf_cookie(response)  # a new session, a new CSRF token
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        if not cookies.csrf_valid(self.policy, request.headers, request.cookies):
            return self.refusal(request, 403, "CSRF token missing or invalid")
        response = self._redirect("/ops/login", request)
        cookies.clear_session_cookies(self.policy, response)
        return response

    # -- pages -------------------------------------------------------------------------------

    async def dashboard(self, request: web.Request) -> web.StreamResponse:
        report, outbox, dead, audit, runs = await asyncio.gather(
            self.rpc(request, "GetReconciliationReport", pb.GetReconciliationReportRequest()),
            self.rpc(request, "GetOutboxStats", pb.GetOutboxStatsRequest()),
            self.rpc(request, "GetDeadLetterStats", pb.GetDeadLetterStatsRequest()),
            self.rpc(request, "GetAuditorVerdicts", pb.GetAuditorVerdictsRequest()),
            self.rpc(request, "ListReconciliationRuns", pb.ListReconciliationRunsRequest(page_size=1)),
        )
        view = views.dashboard(report, outbox, dead, self.thresholds, audit, runs)
        return self.render("dashboard.html", d=view, staff=True)

    async def auditor(self, request: web.Request) -> web.StreamResponse:
        check = request.query.get("check", "")
        check = check if check in views.AUDIT_CHECKS else ""
        answer = await self.rpc(
            request, "GetAuditorVerdicts", pb.GetAuditorVerdictsRequest(runs=AUDIT_HISTORY, check=check)
        )
        return self.render(
            "auditor.html", runs=views.audit_runs(answer), check=check, checks=views.AUDIT_CHECKS, staff=True
        )

    async def reconciliation(self, request: web.Request) -> web.StreamResponse:
        answer = await self.rpc(
            request, "ListReconciliationRuns", pb.ListReconciliationRunsRequest(page_size=RUNS_LISTED)
        )
        return self.render("reconciliation.html", runs=[views.recon_run(r) for r in answer.runs], staff=True)

    def _item_class(self, request: web.Request) -> str:
        item_class = request.query.get("class", "").strip().upper()
        return item_class if item_class in views.ITEM_CLASSES else ""

    async def reconciliation_run(self, request: web.Request) -> web.StreamResponse:
        return await self._run_page(request, self._item_class(request))

    async def reconciliation_close(self, request: web.Request) -> web.StreamResponse:
        """Close one item queued for review with the operator's reason (no money moves); the run's
        page comes back with what happened (htmx swaps its items section)."""
        form = await request.post()
        key = str(form.get("item_key", ""))
        message = pb.CloseReconciliationItemRequest(item_key=key, reason=str(form.get("reason", "")))
        try:
            await self.rpc(request, "CloseReconciliationItem", message)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _UNAVAILABLE:
                raise
            error = exc.details() or exc.code().name
            return await self._run_page(request, str(form.get("class", "")), error=error, status=409)
        return await self._run_page(request, str(form.get("class", "")), notice=f"Closed {key}.")

    async def reconciliation_write_off(self, request: web.Request) -> web.StreamResponse:
        """Propose, approve or reject writing off an item's SUSPENSE (four eyes: the API refuses the
        proposer's own approval); the run's page comes back with what happened."""
        form = await request.post()
        key = str(form.get("item_key", ""))
        reason = str(form.get("reason", ""))
        verb = request.path.rsplit("/", 1)[-1]
        method, message, done = {
            "propose_write_off": (
                "ProposeReconciliationWriteOff",
                pb.ProposeReconciliationWriteOffRequest(item_key=key, reason=reason),
                f"Write-off of {key} proposed: waiting for an approver.",
            ),
            "approve_write_off": (
                "ApproveReconciliationWriteOff",
                pb.ApproveReconciliationWriteOffRequest(item_key=key),
                f"Written off {key}.",
            ),
            "reject_write_off": (
                "RejectReconciliationWriteOff",
                pb.RejectReconciliationWriteOffRequest(item_key=key, reason=reason),
                f"Write-off of {key} rejected: it stays in suspense.",
            ),
        }[verb]
        try:
            await self.rpc(request, method, message)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _UNAVAILABLE:
                raise
            error = exc.details() or exc.code().name
            return await self._run_page(request, str(form.get("class", "")), error=error, status=409)
        return await self._run_page(request, str(form.get("class", "")), notice=done)

    async def _run_page(
        self,
        request: web.Request,
        item_class: str,
        *,
        notice: str | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        item_class = item_class if item_class in views.ITEM_CLASSES else ""
        message = pb.ListReconciliationItemsRequest(
            run_id=run_id,
            item_class=item_class,
            page_size=ITEMS_PER_PAGE,
            page_token=request.query.get("page_token", ""),
        )
        try:
            answer = await self.rpc(request, "ListReconciliationItems", message)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                raise
            return self._no_run(exc)
        # The run's own line, when it is among the latest (there is no RPC for one run).
        runs = await self.rpc(
            request, "ListReconciliationRuns", pb.ListReconciliationRunsRequest(page_size=RUNS_LISTED)
        )
        run = next((views.recon_run(r) for r in runs.runs if r.run_id == run_id), None)
        return self.render(
            "reconciliation_run.html",
            run_id=run_id,
            run=run,
            items=[views.recon_item(i) for i in answer.items],
            next_page=answer.next_page_token,
            item_class=item_class,
            classes=views.ITEM_CLASSES,
            notice=notice,
            error=error,
            status=status,
            staff=True,
        )

    def _no_run(self, exc: grpc.aio.AioRpcError) -> web.Response:
        return self.render(
            "missing.html",
            status=404,
            what="reconciliation run",
            message=exc.details() or "",
            back="/ops/reconciliation",
            staff=True,
        )

    async def reconciliation_csv(self, request: web.Request) -> web.StreamResponse:
        """A run's items (of one class, or all) as CSV, read page by page from the API and sent as
        it comes: never cached, phone numbers masked, text a spreadsheet would run made inert."""
        run_id = request.match_info["run_id"]
        item_class = self._item_class(request)

        async def page(token: str) -> Any:
            message = pb.ListReconciliationItemsRequest(
                run_id=run_id, item_class=item_class, page_size=CSV_PAGE, page_token=token
            )
            return await self.rpc(request, "ListReconciliationItems", message)

        try:
            answer = await page("")  # before any header is sent: a refusal is still a page
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                raise
            return self._no_run(exc)
        name = f"reconciliation-{answer_safe(run_id)}{'-' + item_class.lower() if item_class else ''}.csv"
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{name}"',
            }
        )
        security.harden(response)
        await response.prepare(request)
        await response.write(_csv_lines([list(CSV_COLUMNS)]))
        while True:
            await response.write(_csv_lines([views.csv_row(i) for i in answer.items]))
            if not answer.next_page_token:
                break
            try:
                answer = await page(answer.next_page_token)
            except (grpc.aio.AioRpcError, Refused) as exc:
                # The headers went out: no error page can follow. Failing past the guard makes
                # aiohttp close the connection before the last chunk, so the browser reports a
                # failed download, never a short file that looks complete.
                raise ExportInterrupted(f"reconciliation export of {run_id} stopped: {exc}") from exc
        await response.write_eof()
        return response

    # -- paybill suspense ----------------------------------------------------------------------

    async def _suspense(
        self, request: web.Request, *, status: int = 200, notice: str | None = None, error: str | None = None
    ) -> dict[str, Any]:
        try:
            answer = await self.rpc(
                request, "ListPaybillSuspense", pb.ListPaybillSuspenseRequest(page_size=200)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            return {"rows": [], "notice": None, "error": exc.details(), "status": 501}
        items = [views.suspense_item(i) for i in answer.items]
        return {"rows": items, "notice": notice, "error": error, "status": status}

    async def paybill(self, request: web.Request) -> web.StreamResponse:
        s = await self._suspense(request)
        return self.render("paybill.html", status=s.pop("status"), s=s, staff=True)

    async def _paybill_act(
        self, request: web.Request, method: str, message: Message, done: str
    ) -> web.StreamResponse:
        error, answer = None, None
        try:
            answer = await self.rpc(request, method, message)
        except grpc.aio.AioRpcError as exc:
            error = exc.details() or exc.code().name
        if answer is not None and method == "ApprovePaybillAssignment":
            done = f"{done} It is now deposit {answer.transaction_id}."
        if answer is not None and method == "ApprovePaybillRefund":
            done = f"{done} Refund {answer.refund.status}: {answer.refund.detail}"
        s = await self._suspense(request, notice=None if error else done, error=error)
        s.pop("status")
        response = self.render("_paybill.html", status=200 if error is None else 409, s=s)
        if answer is not None and method == "ApprovePaybillAssignment":
            response.headers["X-Transaction-Id"] = answer.transaction_id
        return response

    async def paybill_propose(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        message = pb.ProposePaybillAssignmentRequest(
            trans_id=request.match_info["trans_id"],
            reference=str(form.get("reference", "")).strip(),
            reason=str(form.get("reason", "")),
        )
        return await self._paybill_act(
            request, "ProposePaybillAssignment", message, "Proposed: waiting for an approver."
        )

    async def paybill_approve(self, request: web.Request) -> web.StreamResponse:
        message = pb.ApprovePaybillAssignmentRequest(trans_id=request.match_info["trans_id"])
        return await self._paybill_act(request, "ApprovePaybillAssignment", message, "Approved.")

    async def paybill_reject(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        message = pb.RejectPaybillAssignmentRequest(
            trans_id=request.match_info["trans_id"], reason=str(form.get("reason", ""))
        )
        return await self._paybill_act(
            request, "RejectPaybillAssignment", message, "Rejected: the payment stays in suspense."
        )

    async def paybill_propose_refund(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        message = pb.ProposePaybillRefundRequest(
            trans_id=request.match_info["trans_id"], reason=str(form.get("reason", ""))
        )
        return await self._paybill_act(
            request, "ProposePaybillRefund", message, "Refund proposed: waiting for an approver."
        )

    async def paybill_approve_refund(self, request: web.Request) -> web.StreamResponse:
        message = pb.ApprovePaybillRefundRequest(trans_id=request.match_info["trans_id"])
        return await self._paybill_act(request, "ApprovePaybillRefund", message, "Approved.")

    async def paybill_reject_refund(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        message = pb.RejectPaybillRefundRequest(
            trans_id=request.match_info["trans_id"], reason=str(form.get("reason", ""))
        )
        return await self._paybill_act(
            request, "RejectPaybillRefund", message, "Refund rejected: the payment stays in suspense."
        )

    # -- KYC attestations (four-eyes) ----------------------------------------------------------

    async def _attestations(self, request: web.Request, **shown: Any) -> dict[str, Any]:
        try:
            answer = await self.rpc(
                request, "ListKycAttestations", pb.ListKycAttestationsRequest(page_size=200)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            return {"rows": [], "error": exc.details(), "status": 501}
        rows = [views.kyc_attestation(a) for a in answer.attestations]
        return {"rows": rows, "notice": None, "error": None, "revealed": None, "status": 200, **shown}

    async def kyc(self, request: web.Request) -> web.StreamResponse:
        k = await self._attestations(request)
        return self.render("kyc.html", status=k.pop("status"), k=k, staff=True)

    async def _kyc_act(
        self, request: web.Request, method: str, message: Message, done: str
    ) -> tuple[Any, web.StreamResponse]:
        error, answer = None, None
        try:
            answer = await self.rpc(request, method, message)
        except grpc.aio.AioRpcError as exc:
            error = exc.details() or exc.code().name
        k = await self._attestations(request, notice=None if error else done, error=error)
        k.pop("status")
        if answer is not None and method == "RevealKycAttestation":
            k["revealed"] = views.kyc_attestation(answer.attestation)
        return answer, self.render("_kyc.html", status=200 if error is None else 409, k=k)

    async def kyc_propose(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()

        def field(name: str) -> str:
            return str(form.get(name, "")).strip()

        message = pb.ProposeKycAttestationRequest(
            user_id=field("user_id"),
            identity=pb.KycIdentity(
                first_name=field("first_name"),
                last_name=field("last_name"),
                date_of_birth=field("date_of_birth"),
                residence=field("residence"),
                citizen=field("citizen"),
            ),
            evidence=field("evidence"),
        )
        _, response = await self._kyc_act(
            request, "ProposeKycAttestation", message, "Proposed: waiting for a different approver."
        )
        return response

    async def kyc_approve(self, request: web.Request) -> web.StreamResponse:
        message = pb.ApproveKycAttestationRequest(attestation_id=request.match_info["attestation_id"])
        _, response = await self._kyc_act(
            request, "ApproveKycAttestation", message, "Approved: the user's KYC snapshot is stored."
        )
        return response

    async def kyc_reject(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        message = pb.RejectKycAttestationRequest(
            attestation_id=request.match_info["attestation_id"], reason=str(form.get("reason", ""))
        )
        _, response = await self._kyc_act(
            request, "RejectKycAttestation", message, "Rejected: nothing stored."
        )
        return response

    async def kyc_reveal(self, request: web.Request) -> web.StreamResponse:
        """The identity as proposed, in this one answer (never cached); the API audits who and why."""
        form = await request.post()
        message = pb.RevealKycAttestationRequest(
            attestation_id=request.match_info["attestation_id"], reason=str(form.get("reason", ""))
        )
        _, response = await self._kyc_act(request, "RevealKycAttestation", message, "Shown below; audited.")
        return response

    async def queue(self, request: web.Request) -> web.StreamResponse:
        status = request.query.get("status", "NEEDS_REVIEW")
        type_ = request.query.get("type", "")
        message = pb.ListReviewQueueRequest(
            statuses=[status] if status in ("NEEDS_REVIEW", "OUTCOME_UNKNOWN") else [],
            type=type_ if type_ in ("DEPOSIT", "WITHDRAWAL") else "",
            page_size=50,
            page_token=request.query.get("page_token", ""),
        )
        answer = await self.rpc(request, "ListReviewQueue", message)
        items = [views.story(i) for i in answer.items]
        return self.render(
            "queue.html",
            items=items,
            next_page=answer.next_page_token,
            filter_status=status,
            filter_type=type_,
            staff=True,
        )

    async def search(self, request: web.Request) -> web.StreamResponse:
        query = request.query.get("q", "").strip()
        try:
            answer = await self.rpc(request, "SearchTransactions", pb.SearchTransactionsRequest(query=query))
        except grpc.aio.AioRpcError as exc:
            return self.render(
                "search.html", query=query, matches=[], error=exc.details(), staff=True, status=400
            )
        matches = [views.match(m) for m in answer.matches]
        if len(matches) == 1:
            return self._redirect(f"/ops/transactions/{matches[0]['id']}")
        return self.render("search.html", query=query, matches=matches, error=None, staff=True)

    async def _story(self, request: web.Request, tx_id: str) -> dict[str, Any] | None:
        """The transaction's story, or None when there is no such transaction (or id)."""
        try:
            answer = await self.rpc(
                request, "ListReviewQueue", pb.ListReviewQueueRequest(transaction_id=tx_id)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                return None
            raise
        return views.story(answer.items[0]) if answer.items else None

    async def transaction(self, request: web.Request) -> web.StreamResponse:
        tx_id = request.match_info["tx_id"]
        item = await self._story(request, tx_id)
        if item is None:
            return self.render(
                "search.html", query=tx_id, matches=[], staff=True, status=404, error="No such transaction."
            )
        template = "_story.html" if request.headers.get("HX-Request") else "transaction.html"
        return self.render(template, t=item, notice=None, error=None, staff=True)

    async def _act(
        self, request: web.Request, tx_id: str, method: str, message: Message, done: str
    ) -> web.Response:
        error = None
        try:
            await self.rpc(request, method, message)
        except grpc.aio.AioRpcError as exc:
            error = exc.details() or exc.code().name
        item = await self._story(request, tx_id)
        if item is None:
            return self.render(
                "search.html", query=tx_id, matches=[], staff=True, status=404, error="No such transaction."
            )
        return self.render(
            "_story.html",
            status=200 if error is None else 409,
            t=item,
            notice=None if error else done,
            error=error,
        )

    async def propose(self, request: web.Request) -> web.StreamResponse:
        tx_id = request.match_info["tx_id"]
        form = await request.post()
        kind = views.KIND_NUMBER.get(str(form.get("kind", "")), 0)
        evidence = str(form.get("deriv_transaction_id", "")).strip()
        message = pb.ProposeReviewActionRequest(
            transaction_id=tx_id,
            kind=kind,
            reason=str(form.get("reason", "")),
            deriv_transaction_id=int(evidence) if evidence.isdigit() and len(evidence) < 19 else 0,
            # A withdrawal completes on its payout's receipt: the API checks its form and M-Pesa.
            mpesa_receipt=str(form.get("mpesa_receipt", "")).strip().upper()[:64],
        )
        return await self._act(
            request, tx_id, "ProposeReviewAction", message, "Proposed: waiting for an approver."
        )

    async def reveal(self, request: web.Request) -> web.StreamResponse:
        """The customer's number for this one answer (never cached); the API audits who and why."""
        tx_id = request.match_info["tx_id"]
        form = await request.post()
        message = pb.RevealCustomerPhoneRequest(transaction_id=tx_id, reason=str(form.get("reason", "")))
        revealed, error = None, None
        try:
            revealed = (await self.rpc(request, "RevealCustomerPhone", message)).phone
        except grpc.aio.AioRpcError as exc:
            error = exc.details() or exc.code().name
        item = await self._story(request, tx_id)
        if item is None:
            return self.render(
                "search.html", query=tx_id, matches=[], staff=True, status=404, error="No such transaction."
            )
        return self.render("_story.html", t=item, notice=None, error=error, revealed=revealed)

    async def approve(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        message = pb.ApproveReviewActionRequest(action_id=request.match_info["action_id"])
        return await self._act(
            request, str(form.get("transaction_id", "")), "ApproveReviewAction", message, "Approved."
        )

    async def reject(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        message = pb.RejectReviewActionRequest(
            action_id=request.match_info["action_id"], reason=str(form.get("reason", ""))
        )
        return await self._act(
            request, str(form.get("transaction_id", "")), "RejectReviewAction", message, "Rejected."
        )


def answer_safe(text: str) -> str:
    """A value fit for a header's quoted file name."""
    return re.sub(r"[^A-Za-z0-9_-]", "", text)[:64]


def _csv_lines(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


_UNAVAILABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
AUDIT_HISTORY = 20  # auditor runs on the history page
RUNS_LISTED = 50
ITEMS_PER_PAGE = 100
CSV_PAGE = 500  # the API's largest page
# Refused reads end the page (403); a refused action is shown beside the action (e.g. four-eyes).
_READS = frozenset(
    {
        "GetReconciliationReport",
        "GetOutboxStats",
        "GetDeadLetterStats",
        "ListReviewQueue",
        "SearchTransactions",
        "GetAuditorVerdicts",
        "ListReconciliationRuns",
        "ListReconciliationItems",
        "ListPaybillSuspense",
        "ListKycAttestations",
    }
)

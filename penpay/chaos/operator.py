"""The soak's scripted operator: every NEEDS_REVIEW resolved through the review API, four-eyes.

Two staff identities: one proposes (role operator), the other approves (role approver). The
action is chosen from the evidence, as a person would (`choose`, pure):

- the provider shows the money arrived  -> RESOLVE_COMPLETED with the provider's own id
  (a deposit: the Deriv transaction id of our transfer; a withdrawal: the B2C receipt);
- it provably did not (Deriv refused the transfer, no transfer at Deriv) -> REFUND the KES;
- nothing can have moved (a push with no answer, a debit never executed) -> FAIL, which the
  API allows only when the provider proves it (STK Query; Deriv resolve-only);
- an outcome still open (a transfer or payout unanswered) -> RETRY: the saga resolves it again
  under the same id.

What the operator reads of the providers stands in for their back-office portals (the Deriv
simulator's transfer book, the M-Pesa simulator's B2C book); the review API checks every piece of
evidence again with the providers' own APIs before anything is booked. A proposal the provider
denies is REFUSED: the operator then retries the step instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc

from security.access_tokens import SigningKey

PROPOSER = "soak-olga"
APPROVER = "soak-abel"


@dataclass(frozen=True, slots=True)
class Choice:
    kind: str  # RESOLVE_COMPLETED | REFUND | FAIL | RETRY
    why: str
    deriv_transaction_id: int = 0
    mpesa_receipt: str = ""


def _status(evidence: Mapping[str, str], kind: str) -> str | None:
    return evidence.get(kind)


def choose(
    *,
    type_: str,
    evidence: Mapping[str, str],
    possible: frozenset[str],
    deriv_paid_as: int | None,
    payout_receipt: str | None,
    denied: frozenset[str] = frozenset(),
) -> Choice | None:
    """The action for one item: `evidence` maps MPESA_REQUEST etc. to its status; `deriv_paid_as`
    is our transfer's id in Deriv's books (None: none there); `payout_receipt` the B2C's receipt in
    M-Pesa's books (None: not paid); `denied` the kinds the provider already refused for it."""

    def pick(kind: str, why: str, **evidence_given: Any) -> Choice | None:
        if kind in possible and kind not in denied:
            return Choice(kind, why, **evidence_given)
        return None

    if type_ == "DEPOSIT":
        refund = _status(evidence, "MPESA_DISBURSEMENT")
        if refund is not None:
            return pick("RETRY", "the refund's send is stuck: send it again under its one id")
        if deriv_paid_as is not None:
            return pick(
                "RESOLVE_COMPLETED", "Deriv's books show our transfer", deriv_transaction_id=deriv_paid_as
            )
        if _status(evidence, "DERIV_TRANSFER") == "FAILED":
            return pick("REFUND", "Deriv refused the transfer and holds none: give the KES back")
        return (
            pick("FAIL", "no M-Pesa answer: STK Query decides whether the customer paid")
            or pick("RETRY", "an outcome is open: resolve it again under the same id")
            or pick("REFUND", "the customer paid and Deriv holds no transfer: give the KES back")
        )
    if type_ != "WITHDRAWAL":
        return None  # another kind of item (e.g. money in suspense): not this operator's to judge
    if payout_receipt is not None:
        return pick("RESOLVE_COMPLETED", "M-Pesa's books show the payout", mpesa_receipt=payout_receipt)
    return pick("FAIL", "the Deriv debit never executed") or pick(
        "RETRY", "an outcome is open: resolve it again under the same id"
    )


@dataclass
class OperatorReport:
    """What the scripted operator did (in the soak's report)."""

    reviewed: int = 0  # NEEDS_REVIEW transactions it found
    proposed: Counter[str] = field(default_factory=Counter)
    executed: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # provider denied / moved on
    four_eyes_checked: bool = False  # the proposer's own approval was refused
    left: list[str] = field(default_factory=list)  # still under review at the end, with why
    rounds: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "reviewed": self.reviewed,
            "proposed": dict(self.proposed),
            "executed": dict(self.executed),
            "refused": dict(self.refused),
            "four_eyes_checked": self.four_eyes_checked,
            "left_under_review": self.left,
            "rounds": self.rounds,
        }


class ScriptedOperator:
    def __init__(
        self,
        grpc_address: str,
        key: SigningKey,
        *,
        deriv_control: str,
        mpesa_control: str,
        in_flight: Callable[[], Any],
        say: Callable[[str], None] = print,
    ) -> None:
        from penpay_api.auth import RoleAwareAccessTokens

        tokens = RoleAwareAccessTokens([key])
        now = _now()
        self._proposer = _bearer(
            tokens.issue_operator_token(operator=PROPOSER, now=now, roles=("operator",))[0]
        )
        self._approver = _bearer(
            tokens.issue_operator_token(operator=APPROVER, now=now, roles=("approver",))[0]
        )
        self._address = grpc_address
        self._deriv = deriv_control.rstrip("/")
        self._mpesa = mpesa_control.rstrip("/")
        self._in_flight = in_flight
        self._say = say
        self.report = OperatorReport()
        self._denied: dict[str, set[str]] = {}

    async def run(self, *, rounds: int = 6, settle_timeout: float = 120.0) -> OperatorReport:
        from penpay.ops.v1 import ops_pb2_grpc

        channel = grpc.aio.insecure_channel(self._address)
        seen: set[str] = set()
        try:
            self._ops = ops_pb2_grpc.OpsServiceStub(channel)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                self._http = http
                for _ in range(rounds):
                    items = await self._queue()
                    seen.update(i.transaction_id for i in items)
                    if not items:
                        break
                    self.report.rounds += 1
                    for item in items:
                        await self._work(item)
                    await self._wait_for_sagas(settle_timeout)
                self.report.reviewed = len(seen)
                self.report.left = [f"{i.transaction_id} {i.type}: {i.reason}" for i in await self._queue()]
        finally:
            await channel.close()
        return self.report

    async def _queue(self) -> list[Any]:
        from penpay.ops.v1 import ops_pb2 as pb

        items: list[Any] = []
        token = ""
        while True:
            reply = await self._ops.ListReviewQueue(
                pb.ListReviewQueueRequest(page_size=100, page_token=token),
                metadata=self._proposer,
                timeout=30,
            )
            items.extend(reply.items)
            token = reply.next_page_token
            if not token:
                return items

    async def _work(self, item: Any) -> None:
        from penpay.ops.v1 import ops_pb2 as pb

        evidence = {e.kind: e.status for e in item.evidence}
        fields = {e.kind: dict(e.fields) for e in item.evidence}
        paid_as = await self._deriv_paid_as(item.transaction_id) if item.type == "DEPOSIT" else None
        receipt = None
        ocid = fields.get("MPESA_DISBURSEMENT", {}).get("originator_conversation_id")
        if item.type == "WITHDRAWAL" and ocid:
            receipt = await self._payout_receipt(ocid)
        choice = choose(
            type_=item.type,
            evidence=evidence,
            possible=frozenset(item.possible_actions),
            deriv_paid_as=paid_as,
            payout_receipt=receipt,
            denied=frozenset(self._denied.get(item.transaction_id, ())),
        )
        if choice is None:
            return
        kind = pb.ReviewActionKind.Value(f"REVIEW_ACTION_KIND_{choice.kind}")
        try:
            proposed = await self._ops.ProposeReviewAction(
                pb.ProposeReviewActionRequest(
                    transaction_id=item.transaction_id,
                    kind=kind,
                    reason=f"soak operator: {choice.why}",
                    deriv_transaction_id=choice.deriv_transaction_id,
                    mpesa_receipt=choice.mpesa_receipt,
                ),
                metadata=self._proposer,
                timeout=60,
            )
        except grpc.aio.AioRpcError as error:
            self._say(f"operator: {choice.kind} for {item.transaction_id} not proposed: {error.details()}")
            return
        self.report.proposed[choice.kind] += 1
        action_id = proposed.action.action_id
        if not self.report.four_eyes_checked:
            # once per soak: the proposer's own approval must be refused
            try:
                await self._ops.ApproveReviewAction(
                    pb.ApproveReviewActionRequest(action_id=action_id), metadata=self._proposer, timeout=60
                )
                raise AssertionError("the proposer approved their own proposal")
            except grpc.aio.AioRpcError as error:
                self.report.four_eyes_checked = error.code() is grpc.StatusCode.PERMISSION_DENIED
        for _ in range(5):
            try:
                await self._ops.ApproveReviewAction(
                    pb.ApproveReviewActionRequest(action_id=action_id), metadata=self._approver, timeout=90
                )
                self.report.executed[choice.kind] += 1
                return
            except grpc.aio.AioRpcError as error:
                if error.code() is grpc.StatusCode.UNAVAILABLE:  # the provider cannot say yet
                    await asyncio.sleep(2.0)
                    continue
                self.report.refused[choice.kind] += 1
                self._denied.setdefault(item.transaction_id, set()).add(choice.kind)
                self._say(f"operator: {choice.kind} for {item.transaction_id} refused: {error.details()}")
                return
        await self._ops.RejectReviewAction(
            pb.RejectReviewActionRequest(action_id=action_id, reason="the provider could not be asked"),
            metadata=self._approver,
            timeout=30,
        )

    async def _deriv_paid_as(self, tx_id: str) -> int | None:
        url = f"{self._deriv}/books/transfers"
        params = {"description_contains": tx_id, "kind": "paymentagent_transfer"}
        async with self._http.get(url, params=params) as response:
            found = (await response.json()).get("transfers", [])
        return int(found[0]["debit_transaction_id"]) if len(found) == 1 else None

    async def _payout_receipt(self, ocid: str) -> str | None:
        async with self._http.get(f"{self._mpesa}/books/b2c/{ocid}") as response:
            if response.status != 200:
                return None
            book = await response.json()
        return str(book["receipt"]) if book.get("paid") and book.get("receipt") else None

    async def _wait_for_sagas(self, seconds: float) -> None:
        """Retried and refunded transactions go back to the sagas: wait (bounded) until none is in flight."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(2.0)
            if not await self._in_flight():
                return


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)

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

Paybill payments in suspense (money with no transaction) are worked first in each round
(`choose_paybill`, pure): the payer's phone read from M-Pesa's C2B book, matched to a soak user,
proposed as that user's deposit by their deposit reference and approved by the other staff member.
A payment whose payer is no user of ours is given back to its payer by M-Pesa's Reversal (once per
soak, four-eyes: the other staff member approves; a refund whose answer was lost is asked about by
approving it again, never sent again). One PenPay refuses as the user's deposit, and any further
stranger's payment, is left in suspense for a person, with why.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc

from domain.payments.paybill import visible_digits_agree
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


@dataclass(frozen=True, slots=True)
class PaybillChoice:
    action: str  # PROPOSE | APPROVE | REFUND | APPROVE_REFUND | LEAVE
    why: str


def choose_paybill(
    *,
    msisdn_shown: str,
    payer_phone: str | None,
    user_phones: frozenset[str],
    proposed_by: str,
    refused: str | None = None,
    refund_status: str = "",
    refund_proposed_by: str = "",
    may_refund: bool = False,
) -> PaybillChoice:
    """What to do with one suspense payment: `payer_phone` is the payer in M-Pesa's C2B book (None:
    not there), `msisdn_shown` what the confirmation showed (masked), `proposed_by` the open
    proposal's author ("" none), `refused` why PenPay already refused our assignment of it,
    `refund_status` / `refund_proposed_by` its open refund ("" none), `may_refund` whether this
    operator may still propose a refund (once per soak)."""
    if refund_status == "PROPOSED":
        if refund_proposed_by == PROPOSER:
            return PaybillChoice("APPROVE_REFUND", "our refund proposal is open: the other approves it")
        return PaybillChoice("LEAVE", f"{refund_proposed_by} proposed its refund: theirs to see through")
    if refund_status == "UNKNOWN":
        return PaybillChoice("APPROVE_REFUND", "the refund's answer was lost: ask M-Pesa, send nothing")
    if refund_status:
        return PaybillChoice("LEAVE", f"its refund is {refund_status}: M-Pesa's result is awaited")
    if refused is not None:
        return PaybillChoice("LEAVE", f"PenPay refused it as the payer's deposit: {refused}")
    if payer_phone is None:
        return PaybillChoice("LEAVE", "M-Pesa's books show no such payment")
    if not visible_digits_agree(msisdn_shown, payer_phone):
        return PaybillChoice("LEAVE", "M-Pesa's books name another payer than the confirmation did")
    if payer_phone not in user_phones:
        if may_refund and not proposed_by:
            return PaybillChoice("REFUND", "the payer is no user of ours: give it back by Reversal")
        return PaybillChoice("LEAVE", "the payer is no user of ours: a person must find them")
    if proposed_by == PROPOSER:
        return PaybillChoice("APPROVE", "our proposal is open: the other staff member approves it")
    if proposed_by:
        return PaybillChoice("LEAVE", f"{proposed_by} proposed an assignment: theirs to see through")
    return PaybillChoice("PROPOSE", "the payer's phone is a user's: the payment is their deposit")


@dataclass
class PaybillReport:
    """The scripted operator's work on paybill suspense."""

    seen: int = 0  # suspense payments it found
    proposed: int = 0
    assigned: int = 0  # approved: now the user's deposit
    deposits: list[str] = field(default_factory=list)  # the transactions the assigned payments became
    four_eyes_checked: bool = False  # the proposer's own approval was refused
    left: list[str] = field(default_factory=list)  # still in suspense at the end: for a person, with why
    refunds_proposed: list[str] = field(default_factory=list)  # TransIDs proposed for a Reversal
    refund_four_eyes_checked: bool = False
    refund_approvals: int = 0  # approvals sent (the first sends the Reversal, later ones only ask)
    refunded: list[str] = field(default_factory=list)  # TransIDs out of suspense by Reversal at the end

    def to_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "proposed": self.proposed,
            "assigned": self.assigned,
            "deposits": self.deposits,
            "four_eyes_checked": self.four_eyes_checked,
            "refunds_proposed": self.refunds_proposed,
            "refund_four_eyes_checked": self.refund_four_eyes_checked,
            "refund_approvals": self.refund_approvals,
            "refunded": self.refunded,
            "left_for_a_person": self.left,
        }


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
    paybill: PaybillReport = field(default_factory=PaybillReport)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reviewed": self.reviewed,
            "proposed": dict(self.proposed),
            "executed": dict(self.executed),
            "refused": dict(self.refused),
            "four_eyes_checked": self.four_eyes_checked,
            "left_under_review": self.left,
            "rounds": self.rounds,
            "paybill_suspense": self.paybill.to_dict(),
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
        user_phones: frozenset[str] = frozenset(),
        reference_of: Callable[[str], Awaitable[str | None]] | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        """`user_phones`: the soak users' phones; `reference_of(phone)`: that user's deposit reference
        (None: not to be had). Without `reference_of`, paybill suspense is left for a person."""
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
        self._user_phones = user_phones
        self._reference_of = reference_of
        self._paybill_refused: dict[str, str] = {}  # TransID -> why PenPay refused our assignment
        self._paybill_why: dict[str, str] = {}  # TransID -> why it was last left alone

    async def run(self, *, rounds: int = 6, settle_timeout: float = 120.0) -> OperatorReport:
        from penpay.ops.v1 import ops_pb2_grpc

        channel = grpc.aio.insecure_channel(self._address)
        seen: set[str] = set()
        try:
            self._ops = ops_pb2_grpc.OpsServiceStub(channel)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                self._http = http
                suspense: set[str] = set()
                for _ in range(rounds):
                    # first: an assigned payment becomes a deposit the sagas take, perhaps into review
                    assigned = await self._work_suspense(suspense)
                    items = await self._queue()
                    seen.update(i.transaction_id for i in items)
                    if not items:
                        if assigned:
                            await self._wait_for_sagas(settle_timeout)
                            continue
                        if await self._refund_pending():
                            await asyncio.sleep(2.0)  # M-Pesa's result is on its way
                            continue
                        break
                    self.report.rounds += 1
                    for item in items:
                        await self._work(item)
                    await self._wait_for_sagas(settle_timeout)
                self.report.reviewed = len(seen)
                self.report.left = [f"{i.transaction_id} {i.type}: {i.reason}" for i in await self._queue()]
                self.report.paybill.seen = len(suspense)
                still = await self._suspense()
                self.report.paybill.left = [
                    f"{i.trans_id} KES {i.amount.amount_cents // 100}: "
                    + self._paybill_why.get(i.trans_id, i.reason)
                    for i in still
                ]
                held = {i.trans_id for i in still}
                self.report.paybill.refunded = [
                    t for t in self.report.paybill.refunds_proposed if t not in held
                ]
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

    async def _suspense(self) -> list[Any]:
        from penpay.ops.v1 import ops_pb2 as pb

        reply = await self._ops.ListPaybillSuspense(
            pb.ListPaybillSuspenseRequest(page_size=200), metadata=self._proposer, timeout=30
        )
        return list(reply.items)

    async def _work_suspense(self, seen: set[str]) -> int:
        """Each suspense payment assigned to the soak user who paid it, where one did: how many."""
        items = await self._suspense()
        seen.update(i.trans_id for i in items)
        if not items:
            return 0
        payers = await self._c2b_payers()
        assigned = 0
        for item in items:
            choice = choose_paybill(
                msisdn_shown=item.msisdn_shown,
                payer_phone=payers.get(item.trans_id),
                user_phones=self._user_phones if self._reference_of is not None else frozenset(),
                proposed_by=item.proposed_by,
                refused=self._paybill_refused.get(item.trans_id),
                refund_status=item.refund_status,
                refund_proposed_by=item.refund_proposed_by,
                may_refund=self._reference_of is not None and not self.report.paybill.refunds_proposed,
            )
            self._paybill_why[item.trans_id] = choice.why
            if choice.action == "REFUND":
                if await self._propose_refund(item.trans_id, choice.why):
                    await self._approve_refund(item.trans_id)
                continue
            if choice.action == "APPROVE_REFUND":
                await self._approve_refund(item.trans_id)
                continue
            if choice.action == "PROPOSE":
                if not await self._propose_paybill(item.trans_id, payers[item.trans_id], choice.why):
                    continue
            elif choice.action != "APPROVE":
                continue
            assigned += await self._approve_paybill(item.trans_id)
        return assigned

    async def _propose_paybill(self, trans_id: str, phone: str, why: str) -> bool:
        from penpay.ops.v1 import ops_pb2 as pb

        assert self._reference_of is not None
        reference = await self._reference_of(phone)
        if reference is None:
            self._paybill_why[trans_id] = "the payer's deposit reference could not be had"
            return False
        try:
            await self._ops.ProposePaybillAssignment(
                pb.ProposePaybillAssignmentRequest(
                    trans_id=trans_id, reference=reference, reason=f"soak operator: {why}"
                ),
                metadata=self._proposer,
                timeout=60,
            )
        except grpc.aio.AioRpcError as error:
            self._paybill_refused[trans_id] = error.details() or error.code().name
            self._say(f"operator: assigning paybill {trans_id} not proposed: {error.details()}")
            return False
        self.report.paybill.proposed += 1
        if not self.report.paybill.four_eyes_checked:
            # once per soak: the proposer's own approval must be refused here too
            try:
                await self._ops.ApprovePaybillAssignment(
                    pb.ApprovePaybillAssignmentRequest(trans_id=trans_id), metadata=self._proposer, timeout=60
                )
                raise AssertionError("the proposer approved their own paybill assignment")
            except grpc.aio.AioRpcError as error:
                self.report.paybill.four_eyes_checked = error.code() is grpc.StatusCode.PERMISSION_DENIED
        return True

    async def _approve_paybill(self, trans_id: str) -> int:
        from penpay.ops.v1 import ops_pb2 as pb

        try:
            approved = await self._ops.ApprovePaybillAssignment(
                pb.ApprovePaybillAssignmentRequest(trans_id=trans_id), metadata=self._approver, timeout=60
            )
        except grpc.aio.AioRpcError as error:
            self._paybill_refused[trans_id] = error.details() or error.code().name
            self._say(f"operator: assigning paybill {trans_id} refused: {error.details()}")
            try:  # the refused proposal is closed, so a person starts from a clean payment
                await self._ops.RejectPaybillAssignment(
                    pb.RejectPaybillAssignmentRequest(trans_id=trans_id, reason="refused on approval"),
                    metadata=self._approver,
                    timeout=30,
                )
            except grpc.aio.AioRpcError as error:
                self._say(f"operator: the proposal for paybill {trans_id} not rejected: {error.details()}")
            return 0
        self.report.paybill.assigned += 1
        self.report.paybill.deposits.append(approved.transaction_id)
        return 1

    async def _propose_refund(self, trans_id: str, why: str) -> bool:
        from penpay.ops.v1 import ops_pb2 as pb

        try:
            await self._ops.ProposePaybillRefund(
                pb.ProposePaybillRefundRequest(trans_id=trans_id, reason=f"soak operator: {why}"),
                metadata=self._proposer,
                timeout=60,
            )
        except grpc.aio.AioRpcError as error:
            self._say(f"operator: refunding paybill {trans_id} not proposed: {error.details()}")
            return False
        self.report.paybill.refunds_proposed.append(trans_id)
        try:  # four eyes: the proposer's own approval is refused (and audited)
            await self._ops.ApprovePaybillRefund(
                pb.ApprovePaybillRefundRequest(trans_id=trans_id), metadata=self._proposer, timeout=60
            )
            raise AssertionError("the proposer approved their own paybill refund")
        except grpc.aio.AioRpcError as error:
            self.report.paybill.refund_four_eyes_checked = error.code() is grpc.StatusCode.PERMISSION_DENIED
        return True

    async def _approve_refund(self, trans_id: str) -> None:
        from penpay.ops.v1 import ops_pb2 as pb

        try:
            answer = await self._ops.ApprovePaybillRefund(
                pb.ApprovePaybillRefundRequest(trans_id=trans_id), metadata=self._approver, timeout=90
            )
        except grpc.aio.AioRpcError as error:
            self._say(f"operator: refund of paybill {trans_id} not approved: {error.details()}")
            return
        self.report.paybill.refund_approvals += 1
        self._say(f"operator: refund of paybill {trans_id}: {answer.refund.status} {answer.refund.detail}")

    async def _refund_pending(self) -> bool:
        """A refund of ours whose result has not come yet (bounded by the rounds)."""
        return any(
            i.refund_status in ("SENDING", "ACCEPTED", "UNKNOWN")
            for i in await self._suspense()
            if i.trans_id in self.report.paybill.refunds_proposed
        )

    async def _c2b_payers(self) -> dict[str, str]:
        """TransID -> the payer's phone, from M-Pesa's C2B book (the provider's portal, here)."""
        async with self._http.get(f"{self._mpesa}/books") as response:
            book = await response.json()
        return {str(r["trans_id"]): str(r["phone"]) for r in book.get("c2b", {}).get("transactions", [])}

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

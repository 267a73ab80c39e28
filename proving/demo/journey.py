"""The demo journey over the HTTP bridge, as a frontend would walk it, with the simulators as witnesses.

register -> log in (cookies) -> verify phone and email (codes from the dev-only DevService) -> bind
the simulated Deriv account -> deposit KES (STK Push) and watch USD arrive on Deriv -> withdraw USD
(code from the Deriv simulator's mailbox) and watch KES arrive at the M-Pesa phone -> read the
wallet's balances and ledger.

    result = await run_journey(Endpoints(bridge, deriv_control, mpesa), JourneyOptions(), say=print)

Every wait is bounded by `JourneyOptions.wait_timeout`; a step that fails raises DemoFailed with
the bridge's problem JSON. Each run uses a fresh email and phone, so it repeats on one stack.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, TypeVar

import aiohttp

from proving.demo.bridge import BridgeClient, BridgeError, DemoFailed, open_session
from proving.demo.report import money, signed
from proving.demo.simulators import (
    ControlApiError,
    DerivRestSimulatorControl,
    DerivSimulatorControl,
    MpesaSimulatorControl,
    PhoneBooks,
    SmsSimulatorControl,
)

DEFAULT_DERIV_TOKEN = "sim-client1-token"  # CR90000001, Alice, in the Deriv simulator's seed
FAILED_STATUSES = frozenset({"failed", "reversed", "needs_review"})
_CODE = re.compile(r"code is (\d+)")
_MAX_LEDGER_PAGES = 20

T = TypeVar("T")
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Endpoints:
    bridge_url: str  # the HTTP/JSON bridge, e.g. http://127.0.0.1:8080
    deriv_control_url: str  # the Deriv simulator's control API, e.g. http://127.0.0.1:8768
    mpesa_url: str  # the Daraja simulator (its control API is under /__control__), http://127.0.0.1:8766
    # The SMS simulator (Africa's Talking) whose mailbox holds the phone codes, http://127.0.0.1:8769;
    # None: the API keeps SMS in its development sink (/v1/dev/sent_messages).
    sms_url: str | None = None
    # The Deriv REST simulator (new-API accounts, on the v3 simulator's books), http://127.0.0.1:8770.
    deriv_rest_url: str | None = None


@dataclass(frozen=True, slots=True)
class JourneyOptions:
    deposit_kes_cents: int = 2_600_00  # KES 2,600 = USD 20.00 at the default 130 KES/USD
    withdraw_usd_cents: int = 10_00  # Deriv's payment agent minimum
    # Then KES paid to the paybill with the user's deposit reference (no STK prompt); 0: skipped.
    paybill_kes_cents: int = 1_300_00  # KES 1,300 = USD 10.00
    deriv_token: str = DEFAULT_DERIV_TOKEN
    # When the token's account is bound to another PenPay user already (an earlier run on the
    # same stack), open a fresh client on the Deriv simulator and bind that one instead.
    fresh_deriv_account_if_bound: bool = True
    # "rest": after binding the v3 account, move to Deriv's new API by OAuth (as Deriv migrates a
    # user), so the deposit and the withdrawal go through the REST transport.
    deriv_api: str = "v3"
    wait_timeout: float = 60.0  # each wait: a transaction to complete, money to show up, a code
    poll_interval: float = 0.25
    request_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class TransactionFigures:
    transaction_id: str
    kind: str  # "deposit" or "withdrawal"
    status: str
    amount_cents: int
    currency: str
    converted_cents: int
    converted_currency: str
    rate: str
    statuses_seen: tuple[str, ...]

    @property
    def kes_per_usd(self) -> str:
        """The locked rate as people quote it ("130"), whichever way the transaction converts."""
        try:
            rate = Fraction(self.rate)
        except (ValueError, ZeroDivisionError):
            return self.rate or "?"
        per_usd = 1 / rate if self.currency == "KES" and rate else rate
        exact = Decimal(per_usd.numerator) / Decimal(per_usd.denominator)
        return format(exact.quantize(Decimal("0.0001")).normalize(), "f")

    @classmethod
    def of(cls, kind: str, tx: dict[str, Any], seen: tuple[str, ...] = ()) -> TransactionFigures:
        amount, converted = tx.get("amount") or {}, tx.get("converted_amount") or {}
        return cls(
            transaction_id=str(tx["transaction_id"]),
            kind=kind,
            status=str(tx["status"]),
            amount_cents=int(amount.get("amount_cents", 0)),
            currency=str(amount.get("currency", "")),
            converted_cents=int(converted.get("amount_cents", 0)),
            converted_currency=str(converted.get("currency", "")),
            rate=str(tx.get("rate", "")),
            statuses_seen=seen or (str(tx["status"]),),
        )


@dataclass(frozen=True, slots=True)
class LedgerLine:
    ledger_entry_id: str
    transaction_id: str
    side: str  # "debit" or "credit"
    amount_cents: int
    currency: str
    balance_change_cents: int
    description: str
    created_at: str

    @classmethod
    def of(cls, entry: dict[str, Any]) -> LedgerLine:
        amount = entry.get("amount") or {}
        return cls(
            ledger_entry_id=str(entry["ledger_entry_id"]),
            transaction_id=str(entry.get("transaction_id", "")),
            side=str(entry.get("side", "")).removeprefix("LEDGER_SIDE_").lower(),
            amount_cents=int(amount.get("amount_cents", 0)),
            currency=str(amount.get("currency", "")),
            balance_change_cents=int(entry.get("balance_change_cents", 0)),
            description=str(entry.get("description", "")),
            created_at=str(entry.get("created_at", "")),
        )


@dataclass
class JourneyResult:
    email: str = ""
    phone: str = ""
    user_id: str = ""
    deriv_login_id: str = ""
    # The account in the simulators' books (a v3 loginid; for a REST account, the one behind its
    # nickname): where balances and codes are read.
    deriv_books_loginid: str = ""
    deposit: TransactionFigures | None = None
    withdrawal: TransactionFigures | None = None
    quoted_payout_cents: int = 0
    # The Deriv account's USD balance (cents): before, after the deposit, after the withdrawal.
    deriv_before_cents: int = 0
    deriv_after_deposit_cents: int = 0
    deriv_after_withdrawal_cents: int = 0
    # The M-Pesa phone as the Daraja simulator's books see it.
    mpesa_before: PhoneBooks = field(default_factory=lambda: PhoneBooks(0, 0))
    mpesa_after_deposit: PhoneBooks = field(default_factory=lambda: PhoneBooks(0, 0))
    mpesa_after_withdrawal: PhoneBooks = field(default_factory=lambda: PhoneBooks(0, 0))
    # The paybill deposit (after the withdrawal and the wallet read): the reference the app showed,
    # the M-Pesa TransID, the transaction it became and the Deriv balance after it.
    paybill_business_number: str = ""
    paybill_reference: str = ""
    paybill_trans_id: str = ""
    paybill_deposit: TransactionFigures | None = None
    deriv_after_paybill_cents: int = 0
    wallet_balances: dict[str, int] = field(default_factory=dict)  # currency -> cents
    ledger: list[LedgerLine] = field(default_factory=list)  # oldest first
    # Every secret the journey handled (password, verification and withdrawal codes, the Deriv
    # token, the session cookies): what no log line may contain (tests/demo). Never printed.
    handled_secrets: list[str] = field(default_factory=list, repr=False)


def fresh_phone() -> str:
    """A random Kenyan M-Pesa number that the Daraja simulator lets succeed: no lab range
    (2547000...), no outcome-choosing suffix (those are 0xxx, 1xxx, 2xxx and 8006)."""
    middle = 10 + secrets.randbelow(90)  # never 00: 2547000... is the lab range
    rest = secrets.randbelow(100)
    suffix = 3000 + secrets.randbelow(5000)  # 3000..7999: plain success
    return f"+2547{middle:02d}{rest:02d}{suffix:04d}"


def fresh_email() -> str:
    return f"demo-{secrets.token_hex(5)}@example.co.ke"


async def run_journey(
    endpoints: Endpoints, options: JourneyOptions | None = None, say: Say = print
) -> JourneyResult:
    options = options or JourneyOptions()
    async with (
        open_session(endpoints.bridge_url, options.request_timeout) as browser,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=options.request_timeout)) as control,
    ):
        journey = _Journey(
            BridgeClient(browser, endpoints.bridge_url),
            DerivSimulatorControl(control, endpoints.deriv_control_url),
            MpesaSimulatorControl(control, endpoints.mpesa_url),
            options,
            say,
            SmsSimulatorControl(control, endpoints.sms_url) if endpoints.sms_url else None,
            (
                DerivRestSimulatorControl(control, endpoints.deriv_rest_url)
                if endpoints.deriv_rest_url
                else None
            ),
        )
        return await journey.run()


class _Journey:
    def __init__(
        self,
        bridge: BridgeClient,
        deriv: DerivSimulatorControl,
        mpesa: MpesaSimulatorControl,
        options: JourneyOptions,
        say: Say,
        sms: SmsSimulatorControl | None = None,
        rest: DerivRestSimulatorControl | None = None,
    ) -> None:
        self.sms = sms
        self.rest = rest
        self.bridge = bridge
        self.deriv = deriv
        self.mpesa = mpesa
        self.options = options
        self.say = say
        self.result = JourneyResult()

    async def run(self) -> JourneyResult:
        await self.sign_up()
        await self.verify("phone")
        await self.verify("email")
        await self.bind_deriv()
        if self.options.deriv_api == "rest":
            await self.move_to_rest()
        await self.deposit()
        await self.withdraw()
        await self.read_wallet()
        if self.options.paybill_kes_cents:
            await self.paybill_deposit()
        self.result.handled_secrets.extend(self.bridge.cookie_values())
        return self.result

    # --- identity ---------------------------------------------------------------------------

    async def sign_up(self) -> None:
        r = self.result
        r.email, r.phone = fresh_email(), fresh_phone()
        password = f"Demo-{secrets.token_hex(8)}"  # never printed
        r.handled_secrets.append(password)
        with _step("register"):
            answer = await self.bridge.request(
                "POST", "/v1/users", body={"email": r.email, "phone_number": r.phone, "password": password}
            )
        r.user_id = str(answer["user_id"])
        self.say(f"registered {r.email} / {r.phone} (user {r.user_id})")
        device_id = f"demo-{secrets.token_hex(8)}"
        with _step("log in"):
            # The tokens arrive in HttpOnly cookies only (PEC §13): the jar keeps them, as a browser's.
            login = await self.bridge.request(
                "POST",
                "/v1/sessions",
                body={
                    "login": r.email,
                    "password": password,
                    "device_id": device_id,
                    "device_name": "penpay demo",
                },
            )
        if {"access_token", "refresh_token"} & set(login):
            raise DemoFailed("log in", "the login answer shows its tokens to scripts (PEC §13)")
        if self.bridge.csrf_token() is None:
            raise DemoFailed("log in", "the bridge set no CSRF cookie (penpay_csrf)")
        self.say(f"logged in on device {device_id}: session cookies set, CSRF token received")

    async def verify(self, channel: str) -> None:
        phone = channel == "phone"
        r = self.result
        sink_channel = "sms" if phone else "email"
        # Phone codes are read where an SMS provider delivered them (the simulator's mailbox);
        # email codes, and SMS when no simulator answers, from the development sink.
        sms = self.sms if phone and await self._sms_simulator_answers() else None
        where = "the SMS simulator's mailbox" if sms else f"the development {sink_channel} sink"
        with _step(f"request {channel} verification"):
            await self.bridge.request("POST", f"/v1/users/me/{channel}:requestVerification", body={})
        code = await self._wait(
            f"read the {sink_channel} code from {where}",
            (lambda: self._simulated_sms_code(sms, r.phone))
            if sms
            else (lambda: self._sent_code(sink_channel)),
            what=f"a verification {sink_channel} in {where}",
        )
        r.handled_secrets.append(code)
        with _step(f"verify {channel}"):
            body = {"phone_number": r.phone, "code": code} if phone else {"email": r.email, "code": code}
            await self.bridge.request("POST", f"/v1/{channel}:verify", body=body)
        self.say(f"{channel} verified with the code from {where}")

    async def _sms_simulator_answers(self) -> bool:
        if self.sms is None:
            return False
        try:
            await self.sms.bodies_to("+0")
        except ControlApiError:
            return False
        return True

    @staticmethod
    async def _simulated_sms_code(sms: SmsSimulatorControl, phone: str) -> str | None:
        for body in await sms.bodies_to(phone):  # newest first
            found = _CODE.search(body)
            if found:
                return found.group(1)
        return None

    async def _sent_code(self, channel: str) -> str | None:
        answer = await self.bridge.request("GET", "/v1/dev/sent_messages", params={"channel": channel})
        for message in answer.get("messages", []):  # newest first
            found = _CODE.search(str(message.get("body", "")))
            if found:
                return found.group(1)
        return None

    async def bind_deriv(self) -> None:
        token = self.options.deriv_token
        self.result.handled_secrets.append(token)
        try:
            bound = await self.bridge.request("POST", "/v1/deriv_account:bind", body={"deriv_token": token})
        except BridgeError as error:
            if (
                error.problem.reason != "DERIV_ACCOUNT_ALREADY_BOUND"
                or not self.options.fresh_deriv_account_if_bound
            ):
                raise DemoFailed("bind Deriv account", _http(error), error.problem.body) from None
            with _step("open a fresh simulated Deriv account"):
                client = await self.deriv.open_client_account(
                    first_name="Demo", last_name=self.result.user_id[-8:], email=self.result.email
                )
            self.say(
                "that Deriv account is bound to an earlier demo user; "
                f"opened the simulated client {client.loginid} instead"
            )
            self.result.handled_secrets.append(client.token)
            with _step("bind Deriv account"):
                bound = await self.bridge.request(
                    "POST", "/v1/deriv_account:bind", body={"deriv_token": client.token}
                )
        self.result.deriv_login_id = str(bound["deriv_login_id"])
        self.result.deriv_books_loginid = self.result.deriv_login_id
        acceptable = "acceptable" if bound.get("kyc_acceptable") else "NOT acceptable"
        self.say(f"bound Deriv account {self.result.deriv_login_id} (KYC snapshot from Deriv: {acceptable})")

    async def move_to_rest(self) -> None:
        """Deriv moved the user to its new API: bind the new-API account by OAuth2 + PKCE, as a
        browser does (PenPay's authorize URL, Deriv's consent page, Deriv's redirect to the bridge)."""
        r = self.result
        if self.rest is None:
            raise DemoFailed("move to Deriv's new API", "no Deriv REST simulator address (--deriv-rest)")
        with _step("find the account's nickname on Deriv's new API"):
            nickname = await self.rest.nickname_of(r.deriv_books_loginid)
        with _step("start the Deriv OAuth binding"):
            started = await self.bridge.request("POST", "/v1/deriv_account/oauth:start", body={})
        url = str(started["authorize_url"])
        # the browser nonce cookie the bridge just set (cleared by the callback): no log may hold it
        self.result.handled_secrets.extend(self.bridge.cookie_values())
        self.say(f"Deriv moved {r.deriv_books_loginid} to its new API: consenting as @{nickname} on Deriv")
        with _step("consent on Deriv and follow its redirect to PenPay"):
            # the simulator consents at once as `sim_login`; the redirect lands on the bridge's
            # callback route, which exchanges the code from the backend
            bound = await self.bridge.follow(f"{url}&sim_login={nickname}")
        r.deriv_login_id = str(bound["deriv_login_id"])
        acceptable = "acceptable" if bound.get("kyc_acceptable") else "NOT acceptable"
        self.say(
            f"bound the new-API account {r.deriv_login_id} in place of {r.deriv_books_loginid}: "
            f"history kept, KYC snapshot kept from v3 ({acceptable})"
        )

    # --- deposit ----------------------------------------------------------------------------

    async def deposit(self) -> None:
        r, o = self.result, self.options
        with _step("read the balances before the deposit"):
            r.deriv_before_cents = await self.deriv.balance_cents(r.deriv_books_loginid)
            r.mpesa_before = await self.mpesa.phone(r.phone)
        self.say(f"Deriv {r.deriv_login_id} holds {money(r.deriv_before_cents, 'USD')} before the deposit")
        with _step("initiate deposit"):
            answer = await self.bridge.request(
                "POST",
                "/v1/deposits",
                body={"amount_cents": o.deposit_kes_cents, "currency": "KES"},
                idempotency_key=str(uuid.uuid4()),
            )
        started = TransactionFigures.of("deposit", answer["transaction"])
        usd = money(started.converted_cents, started.converted_currency)
        self.say(
            f"deposit {started.transaction_id} of {money(started.amount_cents, started.currency)} started "
            f"({usd} at {started.kes_per_usd} KES/USD): STK Push sent to {r.phone}, status {started.status}"
        )
        r.deposit = await self._until_completed("deposit", started.transaction_id, started.status)
        credited = r.deposit.converted_cents
        r.deriv_after_deposit_cents = await self._wait(
            "watch USD arrive on Deriv",
            lambda: self._deriv_balance_at(r.deriv_before_cents + credited),
            what=f"{r.deriv_login_id} at {money(r.deriv_before_cents + credited, 'USD')}",
        )
        self.say(
            f"USD arrived on Deriv: {r.deriv_login_id} {money(r.deriv_before_cents, 'USD')} -> "
            f"{money(r.deriv_after_deposit_cents, 'USD')} "
            f"({signed(r.deriv_after_deposit_cents - r.deriv_before_cents)} USD credited)"
        )
        with _step("read the M-Pesa books"):
            r.mpesa_after_deposit = await self.mpesa.phone(r.phone)
        charged = r.mpesa_after_deposit.charged_cents - r.mpesa_before.charged_cents
        self.say(
            f"M-Pesa charged {r.phone} {money(charged, 'KES')} by STK Push "
            f"to shortcode {', '.join(r.mpesa_after_deposit.charged_by) or '?'}"
        )

    # --- withdrawal -------------------------------------------------------------------------

    async def withdraw(self) -> None:
        r, o = self.result, self.options
        with _step("initiate withdrawal"):
            answer = await self.bridge.request(
                "POST",
                "/v1/withdrawals",
                body={"amount_cents": o.withdraw_usd_cents, "currency": "USD"},
                idempotency_key=str(uuid.uuid4()),
            )
        started = TransactionFigures.of("withdrawal", answer["transaction"])
        r.quoted_payout_cents = int((answer.get("quoted_payout") or {}).get("amount_cents", 0))
        self.say(
            f"withdrawal {started.transaction_id} of {money(started.amount_cents, started.currency)} started "
            f"(quoted payout {money(r.quoted_payout_cents, 'KES')} at {started.kes_per_usd} KES/USD), "
            f"status {started.status}"
        )
        await self._wait(
            "wait for the withdrawal code to be sent",
            lambda: self._status_is(started.transaction_id, "awaiting_withdrawal_code"),
            what="status awaiting_withdrawal_code",
        )
        code = await self._wait(
            "read the withdrawal code from the Deriv simulator's mailbox",
            lambda: self.deriv.latest_code(r.deriv_books_loginid),
            what=f"an active code in /mailbox/{r.deriv_books_loginid}",
        )
        self.say(
            f"Deriv emailed the verification code (read from the simulator's mailbox of {r.deriv_login_id})"
        )
        r.handled_secrets.append(code)
        with _step("confirm withdrawal"):
            confirmed = await self.bridge.request(
                "POST",
                f"/v1/withdrawals/{started.transaction_id}:confirm",
                body={"verification_code": code},
                idempotency_key=str(uuid.uuid4()),
            )
        status = str(confirmed["transaction"]["status"])
        self.say(f"withdrawal confirmed with the code: status {status}")
        r.withdrawal = await self._until_completed("withdrawal", started.transaction_id, status)
        with _step("read the Deriv balance"):
            r.deriv_after_withdrawal_cents = await self.deriv.balance_cents(r.deriv_books_loginid)
        self.say(
            f"USD left Deriv: {r.deriv_login_id} {money(r.deriv_after_deposit_cents, 'USD')} -> "
            f"{money(r.deriv_after_withdrawal_cents, 'USD')} "
            f"({signed(r.deriv_after_withdrawal_cents - r.deriv_after_deposit_cents)} USD)"
        )
        payout = r.withdrawal.converted_cents
        expected_paid = r.mpesa_after_deposit.paid_cents + payout
        r.mpesa_after_withdrawal = await self._wait(
            "watch KES arrive at the M-Pesa phone",
            lambda: self._mpesa_paid_at(r.phone, expected_paid),
            what=f"{r.phone} paid {money(expected_paid, 'KES')} in total",
        )
        received = r.mpesa_after_withdrawal.paid_cents - r.mpesa_after_deposit.paid_cents
        self.say(
            f"KES arrived at M-Pesa: {r.phone} received {money(received, 'KES')} by B2C "
            f"from shortcode {', '.join(r.mpesa_after_withdrawal.paid_from) or '?'}"
        )

    # --- paybill deposit ---------------------------------------------------------------------

    async def paybill_deposit(self) -> None:
        """The customer pays the paybill from their phone's M-Pesa menu with the deposit reference
        the app shows: M-Pesa asks PenPay (validation), takes the money, confirms, and the deposit
        goes to Deriv like an STK one."""
        r, o = self.result, self.options
        with _step("get the paybill details"):
            details = await self.bridge.request("GET", "/v1/paybill")
        r.paybill_business_number = str(details["business_number"])
        r.paybill_reference = str(details["account_number"])
        self.say(
            f"paybill deposit: pay business number {r.paybill_business_number}, "
            f"account number {r.paybill_reference}"
        )
        known = {t.transaction_id for t in (r.deposit, r.withdrawal) if t is not None}
        before = await self.deriv.balance_cents(r.deriv_books_loginid)
        with _step("pay the paybill from the M-Pesa phone"):
            paid = await self.mpesa.pay_paybill(
                shortcode=r.paybill_business_number,
                phone=r.phone,
                amount_cents=o.paybill_kes_cents,
                account=r.paybill_reference,
            )
        r.paybill_trans_id = str(paid["TransID"])
        if paid.get("status") != "completed":
            raise DemoFailed("pay the paybill", f"M-Pesa did not take the payment: {paid}", paid)
        self.say(
            f"M-Pesa took {money(o.paybill_kes_cents, 'KES')} from {r.phone} for paybill "
            f"{r.paybill_business_number} (TransID {r.paybill_trans_id}, PenPay validated it first)"
        )

        async def new_deposit() -> dict[str, Any] | None:
            page = await self.bridge.request("GET", "/v1/transactions", params={"page_size": "10"})
            for tx in page.get("transactions", []):
                if tx["transaction_id"] not in known and tx.get("type") in ("TRANSACTION_TYPE_DEPOSIT", 1):
                    return dict(tx)
            return None

        tx = await self._wait("see the paybill deposit", new_deposit, what="a new deposit transaction")
        r.paybill_deposit = await self._until_completed("paybill deposit", tx["transaction_id"], tx["status"])
        credited = r.paybill_deposit.converted_cents
        r.deriv_after_paybill_cents = await self._wait(
            "watch the paybill deposit's USD arrive on Deriv",
            lambda: self._deriv_balance_at(before + credited),
            what=f"{r.deriv_login_id} at {money(before + credited, 'USD')}",
        )
        self.say(
            f"USD arrived on Deriv: {r.deriv_login_id} {money(before, 'USD')} -> "
            f"{money(r.deriv_after_paybill_cents, 'USD')} ({signed(credited)} USD credited by paybill)"
        )

    # --- wallet -----------------------------------------------------------------------------

    async def read_wallet(self) -> None:
        r = self.result
        with _step("get wallet balances"):
            answer = await self.bridge.request("GET", "/v1/wallet/balances")
        r.wallet_balances = {
            str(b["balance"]["currency"]): int(b["balance"]["amount_cents"])
            for b in answer.get("balances", [])
        }
        entries: list[LedgerLine] = []
        token = ""
        with _step("list ledger entries"):
            for _ in range(_MAX_LEDGER_PAGES):
                params = {"page_size": "200", **({"page_token": token} if token else {})}
                page = await self.bridge.request("GET", "/v1/wallet/ledger_entries", params=params)
                entries.extend(LedgerLine.of(e) for e in page.get("ledger_entries", []))
                token = str(page.get("next_page_token", ""))
                if not token:
                    break
        r.ledger = entries[::-1]  # the API lists newest first; a ledger reads oldest first

    # --- waiting ----------------------------------------------------------------------------

    async def _until_completed(self, kind: str, transaction_id: str, last_status: str) -> TransactionFigures:
        seen = [last_status]
        started = time.monotonic()

        async def completed() -> dict[str, Any] | None:
            tx = (await self.bridge.request("GET", f"/v1/transactions/{transaction_id}"))["transaction"]
            status = str(tx["status"])
            if seen[-1] != status:
                seen.append(status)
            if status in FAILED_STATUSES:
                reason = tx.get("failure_reason") or "no reason given"
                raise DemoFailed(
                    f"wait for the {kind} to complete", f"the {kind} ended {status}: {reason}", tx
                )
            return tx if status == "completed" else None

        tx = await self._wait(f"wait for the {kind} to complete", completed, what="status completed")
        figures = TransactionFigures.of(kind, tx, tuple(seen))
        self.say(
            f"{kind} {transaction_id} completed in {time.monotonic() - started:.1f} s "
            f"({' -> '.join(figures.statuses_seen)})"
        )
        return figures

    async def _status_is(self, transaction_id: str, status: str) -> bool | None:
        tx = (await self.bridge.request("GET", f"/v1/transactions/{transaction_id}"))["transaction"]
        if tx["status"] in FAILED_STATUSES:
            raise DemoFailed(f"wait for status {status}", f"the transaction ended {tx['status']}", tx)
        return True if tx["status"] == status else None

    async def _deriv_balance_at(self, cents: int) -> int | None:
        balance = await self.deriv.balance_cents(self.result.deriv_books_loginid)
        return balance if balance == cents else None

    async def _mpesa_paid_at(self, phone: str, paid_cents: int) -> PhoneBooks | None:
        books = await self.mpesa.phone(phone)
        return books if books.paid_cents >= paid_cents else None

    async def _wait(self, step: str, probe: Callable[[], Awaitable[T | None]], *, what: str) -> T:
        """Poll `probe` until it returns a value, at most `wait_timeout` seconds."""
        deadline = time.monotonic() + self.options.wait_timeout
        while True:
            with _step(step):
                value = await probe()
            if value is not None:
                return value
            if time.monotonic() >= deadline:
                raise DemoFailed(step, f"no {what} within {self.options.wait_timeout:g} s")
            await asyncio.sleep(self.options.poll_interval)


def _http(error: BridgeError) -> str:
    body = error.problem.body
    message = body.get("message", "") if isinstance(body, dict) else ""
    reason = error.problem.reason
    return (
        f"HTTP {error.problem.status}"
        + (f" {reason}" if reason else "")
        + (f": {message}" if message else "")
    )


@contextmanager
def _step(name: str) -> Iterator[None]:
    """Turn what can go wrong talking to the stack into a DemoFailed naming the step."""
    try:
        yield
    except BridgeError as error:
        raise DemoFailed(name, _http(error), error.problem.body) from None
    except ControlApiError as error:
        raise DemoFailed(name, f"simulator control API: {error}") from None
    except (aiohttp.ClientError, TimeoutError) as error:
        raise DemoFailed(name, f"cannot reach the stack: {error or type(error).__name__}") from None

"""schemathesis against the bridge's own /openapi.json, the real API and database behind it.

Every operation of the document gets schema-valid (positive) and schema-breaking (negative) requests,
authenticated as a signed-in user who may move money (verified phone, bound Deriv account), or as an
operator for /v1/ops. Checked on every answer: no 5xx; status, content type and body as documented
(success bodies and the error body); schema-breaking input refused; authentication enforced. Checked
around every refused answer (4xx): every table's checksum is what it was, except for what the contract
itself records for a refusal (see REFUSAL_RECORDS). The run prints how many cases it tried.

Bounded: FUZZ_EXAMPLES examples per operation and mode (PENPAY_FUZZ_EXAMPLES), a fixed seed
(PENPAY_FUZZ_SEED to vary it); PENPAY_FUZZ_ONLY narrows the run to the operations whose label has it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the locked dev tools
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.shared.clock import FixedClock
from tests.api.conftest import PASSWORD, Gateway, unique_email, unique_phone

from .conftest import Surface, serve_surface
from .state import Fingerprint, audit_actions_since, fingerprint

# A case of any operation of the document (schemathesis types it by the operation's parameter model).
AnyCase = schemathesis.Case[Any]

pytestmark = pytest.mark.integration

FUZZ_EXAMPLES = int(os.environ.get("PENPAY_FUZZ_EXAMPLES", "15"))
FUZZ_SEED = int(os.environ.get("PENPAY_FUZZ_SEED", "20261122"))
FUZZ_ONLY = os.environ.get("PENPAY_FUZZ_ONLY", "")  # to look at one operation: part of its label


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _int64_as_strings(value: Any, schema: dict[str, Any], components: dict[str, Any]) -> Any:
    schema = _resolve(schema, components)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {k: _int64_as_strings(v, properties.get(k, {}), components) for k, v in value.items()}
    if isinstance(value, list):
        return [_int64_as_strings(v, schema.get("items", {}), components) for v in value]
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if schema.get("format") in ("int64", "uint64") and numeric and float(value).is_integer():
        return str(int(value))  # proto JSON takes 5, 5.0 and 5e0 for an int64
    return value


def negative_data_rejection_but_numeric_int64(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: AnyCase
) -> bool | None:
    """negative_data_rejection, except when the body's only departure from the document is a 64-bit
    integer written as a JSON number: the document shows the canonical string the bridge writes, while
    the bridge reads proto JSON, which takes both forms (and `penpay demo` sends amounts as numbers)."""
    try:
        return negative_data_rejection(ctx, response, case)
    except AcceptedNegativeData:
        document = case.operation.schema.raw_schema
        components = document["components"]["schemas"]
        operation = document["paths"][case.operation.path][case.method.lower()]
        body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        if isinstance(case.body, dict) and "schema" in body_schema:
            normalized = _int64_as_strings(case.body, body_schema["schema"], components)
            validator = jsonschema.Draft4Validator(
                {**body_schema["schema"], "components": document["components"]}
            )
            if normalized != case.body and validator.is_valid(normalized):
                return None
        raise


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection_but_numeric_int64,
    ignored_auth,
]


# Hand-written valid requests run first (hypothesis' explicit phase), so the successful paths of the
# money RPCs are checked against the document too: random strings rarely make a valid deposit.
def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"fuzz-example-{secrets.token_hex(6)}"}


VALID_BODIES: dict[str, list[tuple[dict[str, Any], dict[str, str]]]] = {
    "POST /v1/deposits": [({"amount_cents": "130000", "currency": "KES"}, _key())],
    "POST /v1/withdrawals": [({"amount_cents": "1500", "currency": "USD"}, _key())],
    "POST /v1/users": [({"email": unique_email(), "phone_number": unique_phone(), "password": PASSWORD}, {})],
}

# What a refusal may leave behind, by design: a money call's definitive error is stored to be replayed
# for 24 h (idempotency_keys) when the call executed (any ConfirmWithdrawal refusal; an initiation's
# only once its Transaction was written), and a compliance refusal is audited (audit_logs, chain head).
REFUSAL_RECORDS = frozenset({"idempotency_keys", "audit_logs", "audit_chain_head"})
# ... and a staff call refused for its roles is audited (access.refused, penpay_api.interceptors).
REFUSAL_AUDIT_ACTIONS = frozenset({"ComplianceRefused", "ComplianceHeld", "access.refused"})


@dataclass
class FuzzReport:
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    state_changes: list[str] = field(default_factory=list)

    def record(self, operation: str, status: int) -> None:
        self.by_operation.setdefault(operation, Counter())[status] += 1

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.by_operation.values())

    def statuses(self) -> dict[int, int]:
        return dict(sorted(sum(self.by_operation.values(), Counter()).items()))


@dataclass
class Database:
    """The API's database, read from the fuzzing thread through the test's event loop."""

    engine: AsyncEngine
    loop: asyncio.AbstractEventLoop

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def fingerprint(self) -> Fingerprint:
        return self._run(fingerprint(self.engine))  # type: ignore[no-any-return]

    def refusal_changes(self, before: Fingerprint, after: Fingerprint) -> list[str]:
        """What a refused request changed beyond REFUSAL_RECORDS (empty when nothing)."""
        wrong = [t for t in before.changed_tables(after) if t not in REFUSAL_RECORDS]
        if after.last_audit_id != before.last_audit_id:
            actions = self._run(audit_actions_since(self.engine, before.last_audit_id))
            wrong += [f"audit {a}" for a in actions if a not in REFUSAL_AUDIT_ACTIONS]
        return wrong


def fake_response(status: int, body: bytes, url: str) -> schemathesis.Response:
    return schemathesis.Response(
        status_code=status,
        headers={"content-type": ["application/json"]},
        content=body,
        request=requests.Request("GET", url).prepare(),
        elapsed=0.0,
        verify=True,
    )


def check_titles(case: AnyCase, response: schemathesis.Response) -> set[str]:
    try:
        case.validate_response(response, checks=CHECKS)
    except FailureGroup as failures:
        return {f.title for f in failures.exceptions}
    return set()


def assert_the_checks_bite(schema: Any, base_url: str) -> None:
    """The checks this run relies on fail on a 5xx, on a body the document does not describe and on a
    success without credentials."""
    balances = schema.find_operation_by_path("GET", "/v1/wallet/balances")
    case = balances.Case()
    url = f"{base_url}/v1/wallet/balances"
    error = b'{"code":13,"message":"x","details":[],"type":"about:blank","title":"x","status":500}'
    assert "Server error" in check_titles(case, fake_response(500, error, url))
    undocumented = b'{"balances":[{"balance":{"amount_cents":12}}]}'  # an int64 must be a string
    assert "Response violates schema" in check_titles(case, fake_response(200, undocumented, url))
    # A documented body passes the schema checks; sent without credentials, its 200 is flagged.
    documented = fake_response(200, b'{"balances":[]}', url)
    assert check_titles(case, documented) == {"API accepts requests without authentication"}


class Fuzzer:
    """Runs in a worker thread (schemathesis calls block); the servers run on the test's event loop."""

    def __init__(self, base_url: str, database: Database) -> None:
        self.base_url = base_url
        self.database = database
        self.session = requests.Session()
        self.report = FuzzReport()
        self.current = database.fingerprint()

    def run(self, schema: Any, headers_for: Callable[[str], dict[str, str]]) -> FuzzReport:
        for result in schema.get_all_operations():
            operation = result.ok()
            if FUZZ_ONLY in operation.label:
                self.operation(operation, headers_for(operation.path))
        self.session.close()
        return self.report

    def operation(self, operation: Any, headers: dict[str, str]) -> None:
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @seed(FUZZ_SEED)
        @_examples(operation)
        @settings(
            max_examples=FUZZ_EXAMPLES * 2,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def exercise(case: AnyCase) -> None:
            self.case(operation.label, case, headers)

        exercise()

    def case(self, label: str, case: AnyCase, headers: dict[str, str]) -> None:
        response = case.call(base_url=self.base_url, session=self.session, headers=headers)
        self.report.record(label, response.status_code)
        try:
            case.validate_response(
                response,
                checks=CHECKS,
                headers=headers,
                transport_kwargs={"base_url": self.base_url, "session": self.session, "headers": headers},
            )
        except FailureGroup as failures:
            curl = case.as_curl_command(headers={"Authorization": "Bearer <token>"}, base_url=self.base_url)
            self.report.failures.extend(
                f"{label}: {f.title}: {f.message}\n  {curl}" for f in failures.exceptions
            )
        after = self.database.fingerprint()
        if response.status_code >= 400:
            wrong = self.database.refusal_changes(self.current, after)
            if wrong:
                self.report.state_changes.append(f"{label} -> {response.status_code}: {wrong}")
        self.current = after


def _examples(operation: Any) -> Callable[[Any], Any]:
    def add(test: Any) -> Any:
        for body, headers in VALID_BODIES.get(operation.label, []):
            test = example(case=operation.Case(body=body, headers=headers))(test)
        return test

    return add


def fuzz(base_url: str, headers_for: Callable[[str], dict[str, str]], database: Database) -> FuzzReport:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    assert_the_checks_bite(schema, base_url)
    return Fuzzer(base_url, database).run(schema, headers_for)


async def test_schemathesis_finds_no_server_error_no_schema_mismatch_and_no_state_change_from_refusals(
    fresh_mariadb_url: str, clock: FixedClock, gateway: Gateway
) -> None:
    async with serve_surface(fresh_mariadb_url, clock, gateway) as surface:
        user = await surface.payer()  # may move money: deposits and withdrawals can succeed
        user_headers = {"Authorization": f"Bearer {user.browser.cookies['penpay_access']}"}
        token, _ = surface.tokens.issue_operator_token(operator="fuzz", now=surface.clock.now())
        operator_headers = {"Authorization": f"Bearer {token}"}
        database = Database(surface.core.engine, asyncio.get_running_loop())
        await assert_the_fingerprint_sees_a_refusal_that_records_something(surface)

        def headers_for(path: str) -> dict[str, str]:
            return operator_headers if path.startswith("/v1/ops/") else user_headers

        report = await asyncio.to_thread(fuzz, surface.base_url, headers_for, database)
        check = await surface.operator().post("/v1/ops/consistency_checks", {})
        assert check.status == 200 and check.json["problems"] == [], check.json

    print(
        f"\nschemathesis: {report.total} cases over {len(report.by_operation)} operations "
        f"({FUZZ_EXAMPLES} per operation and mode, seed {FUZZ_SEED}); statuses {report.statuses()}"
    )
    for label, statuses in sorted(report.by_operation.items()):
        print(f"  {label}: {dict(sorted(statuses.items()))}")
    assert report.failures == [], "\n\n".join(report.failures)
    assert report.state_changes == [], "\n".join(report.state_changes)
    assert len(report.by_operation) >= 25 or FUZZ_ONLY  # every RPC of the five bridged services, and /healthz


async def assert_the_fingerprint_sees_a_refusal_that_records_something(surface: Surface) -> None:
    """A wrong verification code is refused but counts an attempt (an UPDATE): the fingerprint shows it."""
    user = await surface.sign_up()
    assert (await user.browser.post("/v1/users/me/phone:requestVerification")).status == 200
    code = await surface.latest_code(user, "sms")
    before = await fingerprint(surface.core.engine)
    wrong = await user.browser.post(
        "/v1/phone:verify", {"phone_number": user.phone, "code": "000000" if code != "000000" else "111111"}
    )
    assert wrong.status == 400
    assert before.changed_tables(await fingerprint(surface.core.engine)) == ["verification_codes"]

"""Hypothesis against the M-Pesa callback endpoints, over a socket, storage on MariaDB.

Two kinds of input:
- mutations of genuine bodies (the Daraja simulator's own STK callback, B2C result, B2C queue timeout and
  Transaction Status result), each example against a request / disbursement of its own stored SENT; the
  row must end in exactly the state the mutation's label allows (tests/fuzz/daraja_mutations.py):
  a defective callback changes nothing (it may be kept for review), a harmless variation is accepted;
- random bytes, random JSON and random callback-shaped JSON at every endpoint, with the right path
  secret, a wrong one or a mangled path, and a random X-Forwarded-For: nothing in the database changes.
Always: no 5xx, the server keeps serving (a genuine callback is accepted afterwards), no ledger or
transaction row is touched, and the path secret appears in no log line.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import aiohttp
import pytest
from hypothesis import example as hypothesis_example
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from mpesa_adapter.callback_store import CONFIRMED, SENT, SUCCEEDED
from mpesa_adapter.routes import PATHS
from persistence.tables import domain_events
from tests.fuzz.conftest import TRIED, Bridge, fuzz, fuzz_settings
from tests.fuzz.daraja_mutations import (
    B,
    Case,
    Kind,
    Menu,
    b2c_result_menu,
    b2c_timeout_menu,
    expected_status,
    mutated,
    status_result_menu,
    stk_menu,
)
from tests.fuzz.hostile import any_json, any_text, dumps
from tests.fuzz.mpesa_harness import (
    AMOUNT,
    ID_MARK,
    MERCHANT_MARK,
    RECEIPT_MARK,
    Genuine,
    counts,
    genuine_b2c,
    genuine_stk,
    post,
    receipt,
    row_in,
    row_of,
    snapshot,
    store_sent,
    transaction_version,
    untouched_transactions,
)
from tests.mpesa_adapter.conftest import Harness

pytestmark = [pytest.mark.integration, pytest.mark.property]


async def one_mutated_example(h: Harness, genuine: Genuine, case: Case) -> str:
    """A fresh SENT row, the mutated body aimed at it, then exactly the state its labels allow (returned)."""
    correlation_id = f"FUZZ-{uuid.uuid4().hex}"
    own_receipt = receipt()
    merchant = f"FUZZ-M-{uuid.uuid4().hex[:12]}"
    tx_id = await store_sent(h, genuine.kind, correlation_id, merchant, genuine.msisdn)
    raw = (
        case.raw.replace(ID_MARK.encode(), correlation_id.encode())
        .replace(MERCHANT_MARK.encode(), merchant.encode())
        .replace(RECEIPT_MARK.encode(), own_receipt.encode())
    )

    status = await post(h, genuine.path, raw)

    why = f"{case.labels} body={raw[:400]!r}"
    assert status < 500, f"HTTP {status}: {why}"
    assert status in (200, 400, 413), f"HTTP {status}: {why}"
    if B not in case.effects:
        assert status == 200, f"a well-formed callback got HTTP {status}: {why}"
    expected = expected_status(genuine.kind, set(case.effects))
    async with h.engine.connect() as conn:
        row = await row_in(conn, genuine.kind, correlation_id)
        events = (
            await conn.execute(
                select(func.count())
                .select_from(domain_events)
                .where(domain_events.c.aggregate_id == str(tx_id))
            )
        ).scalar_one()
    assert row.status == expected, f"row {row.status}, expected {expected}: {why}"
    # A payout confirmed by Transaction Status completes the withdrawal in the same commit (its
    # status change and TransactionCompleted too, one version more).
    completed = 1 if expected == CONFIRMED else 0
    assert events == (0 if expected == SENT else 1 + 2 * completed), f"{events} events: {why}"
    # A refused answer is not recorded: the version did not move. A recorded answer moves it once
    # (the Transaction aggregate writes the STK and the B2C evidence).
    assert await transaction_version(h.engine, tx_id) == (1 if expected == SENT else 2 + completed), why
    if expected == SUCCEEDED:
        stored = row.mpesa_receipt_number if genuine.kind is Kind.STK else row.transaction_receipt
        assert stored == own_receipt
    return expected


SYSTEM_ACCOUNTS_AT_MIGRATION = 4  # FX_SPREAD (migration 0013) and CAPITAL (0022), KES and USD


async def fuzz_mutations(h: Harness, bridge: Bridge, genuine: Genuine, menu: Menu) -> None:
    target = f"mpesa {genuine.kind.value} (mutated genuine body)"
    outcomes: Counter[str] = Counter()

    # Both ways at least once whatever the draw (80 mutations once all happened to be refused):
    # the body unmutated, recorded; the same cut short, refused.
    unmutated = dumps(genuine.template)

    @fuzz_settings()
    @given(case=mutated(genuine.template, menu))
    @hypothesis_example(case=Case(unmutated, frozenset(), ("unmutated",)))
    @hypothesis_example(case=Case(unmutated[:-1], frozenset({B}), ("cut short: not JSON",)))
    def example(case: Case) -> None:
        TRIED[target] += 1
        outcomes[bridge(one_mutated_example(h, genuine, case))] += 1

    await fuzz(target, example)
    print(f"fuzz {target}: rows ended {dict(outcomes)}")
    # The labels were put to the test both ways: refused (left SENT) and accepted.
    assert outcomes[SENT] > 0 and set(outcomes) - {SENT}, dict(outcomes)
    # Still serving, and the genuine body (unmutated) still settles its own request.
    assert await post(h, genuine.path, dumps(genuine.body)) == 200
    expected = expected_status(genuine.kind, set())
    assert (await row_of(h, genuine.kind, genuine.correlation_id)).status == expected
    tables = await counts(h.engine)
    # No money moved: no posting, no entry, and no account beyond the system accounts the
    # migrations open (FX_SPREAD and CAPITAL per currency); a callback opens none.
    assert tables["ledger_postings"] == tables["ledger_entries"] == 0
    assert tables["ledger_accounts"] == SYSTEM_ACCOUNTS_AT_MIGRATION
    assert await untouched_transactions(h.engine)


async def test_mutated_stk_callbacks(h: Harness, bridge: Bridge) -> None:
    genuine = await genuine_stk(h)
    await fuzz_mutations(h, bridge, genuine, stk_menu(AMOUNT, genuine.msisdn))


async def test_mutated_b2c_results(h: Harness, bridge: Bridge) -> None:
    await fuzz_mutations(h, bridge, await genuine_b2c(h, Kind.B2C_RESULT), b2c_result_menu(AMOUNT))


async def test_mutated_b2c_queue_timeouts(h: Harness, bridge: Bridge) -> None:
    await fuzz_mutations(h, bridge, await genuine_b2c(h, Kind.B2C_TIMEOUT), b2c_timeout_menu())


async def test_mutated_transaction_status_results(h: Harness, bridge: Bridge) -> None:
    genuine = await genuine_b2c(h, Kind.STATUS_RESULT)
    await fuzz_mutations(h, bridge, genuine, status_result_menu(AMOUNT))


# --- random input at every endpoint ---------------------------------------------------------------

ENVELOPE_KEYS = {
    "stk": ("MerchantRequestID", "CheckoutRequestID", "ResultCode", "ResultDesc", "CallbackMetadata"),
    "result": (
        "ResultType",
        "ResultCode",
        "ResultDesc",
        "OriginatorConversationID",
        "ConversationID",
        "TransactionID",
        "ResultParameters",
        "ReferenceData",
    ),
}


def _shaped(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys) | any_text, any_json, max_size=len(keys))


random_bodies = st.one_of(
    st.binary(max_size=3000),
    any_json.map(dumps),
    _shaped(ENVELOPE_KEYS["stk"]).map(lambda cb: dumps({"Body": {"stkCallback": cb}})),
    _shaped(ENVELOPE_KEYS["result"]).map(lambda r: dumps({"Result": r})),
)


@st.composite
def addresses(draw: st.DrawFn, secret: str) -> tuple[str, str]:
    """(path, token): the right secret, a wrong token, or the secret at a mangled path."""
    prefix = draw(st.sampled_from(sorted(PATHS.values())))
    how = draw(st.sampled_from(["right", "wrong", "mangled"]))
    if how == "right":
        return prefix, secret
    if how == "wrong":
        token = draw(
            st.one_of(
                st.text(
                    alphabet=st.characters(codec="ascii", exclude_characters="/?#%"), min_size=1, max_size=80
                ),
                st.just(secret[:-1]),
                st.just(secret + "x"),
                st.just(secret.upper()),
            )
        )
        return prefix, token
    path, token = draw(
        st.sampled_from(
            [
                (prefix + "/", secret),
                (prefix, secret + "/"),
                (prefix, secret + "/extra"),
                (prefix.upper(), secret),
                (prefix.replace("/payments", "/payments/"), secret),
                ("", secret),
                ("/other" + prefix, secret),
                (prefix, "x" + secret),
            ]
        )
    )
    return path, token


forwarded_for = st.one_of(
    st.none(),
    st.sampled_from(["196.201.214.200", "127.0.0.1, 10.0.0.1", "::1", "fe80::1%eth0", "1.2.3.4, ,, 5.6.7.8"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
)


async def test_random_input_at_every_endpoint_changes_nothing(h: Harness, bridge: Bridge) -> None:
    stk, b2c = await genuine_stk(h), await genuine_b2c(h, Kind.B2C_RESULT)
    before = await snapshot(h.engine)
    target = "mpesa callbacks (random bytes / JSON, every endpoint)"

    async def one(raw: bytes, address: tuple[str, str], xff: str | None) -> None:
        path, token = address
        headers = {"X-Forwarded-For": xff} if xff is not None else {}
        try:
            status = await post(h, path, raw, token, **headers)
        except aiohttp.ClientError as exc:  # e.g. a token the client itself cannot put in a URL
            pytest.fail(f"client refused the request: {exc!r}")
        assert status < 500, f"HTTP {status} for {path}/{token[:8]}... body={raw[:200]!r}"
        assert status in (200, 400, 403, 404, 405, 413), status
        assert await snapshot(h.engine) == before, f"state changed: {path} body={raw[:300]!r}"

    @fuzz_settings()
    @given(raw=random_bodies, address=addresses(h.secret), xff=forwarded_for)
    def example(raw: bytes, address: tuple[str, str], xff: str | None) -> None:
        TRIED[target] += 1
        bridge(one(raw, address, xff))

    await fuzz(target, example)
    # Still serving: the genuine bodies settle their requests.
    assert await post(h, stk.path, dumps(stk.body)) == 200
    assert await post(h, b2c.path, dumps(b2c.body)) == 200
    assert (await row_of(h, Kind.STK, stk.correlation_id)).status == SUCCEEDED
    assert (await row_of(h, Kind.B2C_RESULT, b2c.correlation_id)).status == SUCCEEDED

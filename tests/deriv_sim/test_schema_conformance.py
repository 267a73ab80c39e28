"""The hand-written validator agrees with Deriv's official send.json schemas, and replies match receive.json.

The schemas are read from the shared anchors (never copied into the project); without them these tests skip.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from deriv_gateway.simulator import DerivSimulator
from deriv_gateway.simulator.server import parse_frame
from deriv_gateway.simulator.validation import SPECS, validate
from tests.deriv_sim.helpers import ConnectClient, Control

from .helpers import AGENT, AGENT_TOKEN, ALICE, ALICE_EMAIL, ALICE_TOKEN, VALIDATED, have_schemas, load_schema

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_schemas(), reason="Deriv schemas not found (set PENPAY_SHARED_DIR)"),
]

VALID: dict[str, dict[str, Any]] = {
    "authorize": {"authorize": "sim-agent-token"},
    "logout": {"logout": 1},
    "ping": {"ping": 1},
    "time": {"time": 1},
    "forget": {"forget": "d1ee7d0d-3ca9-fbb4-720b-5312d487185b"},
    "forget_all": {"forget_all": "balance"},
    "website_status": {"website_status": 1},
    "balance": {"balance": 1},
    "get_settings": {"get_settings": 1},
    "account_list": {"account_list": 1},
    "statement": {"statement": 1},
    "transaction": {"transaction": 1, "subscribe": 1},
    "verify_email": {"verify_email": "a@b.co", "type": "paymentagent_withdraw"},
    "paymentagent_transfer": {
        "paymentagent_transfer": 1,
        "amount": 10,
        "currency": "USD",
        "transfer_to": "CR1",
    },
    "paymentagent_withdraw": {
        "paymentagent_withdraw": 1,
        "amount": 10,
        "currency": "USD",
        "paymentagent_loginid": "CR1",
        "verification_code": "abcd1234",
    },
    "paymentagent_withdraw_justification": {"paymentagent_withdraw_justification": 1},
    "paymentagent_list": {"paymentagent_list": "ke"},
    "paymentagent_details": {"paymentagent_details": 1},
}

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    2,
    -1,
    999,
    1000,
    10**10,
    1.5,
    10.123,
    -0.5,
    "",
    "x",
    "1",
    "ke",
    "KE",
    "USD",
    "US$",
    "CR123",
    "cr123",
    "VRTC1",
    "123",
    "all",
    "current",
    "balance",
    "ticks",
    "nope",
    "a b.c,d'e-f",
    "x" * 8,
    "x" * 251,
    "x" * 501,
    "bad\u00e9\u00e9\u00e9",
    "a@b.co",
    "paymentagent_withdraw",
    "desktop",
    "client",
    "2024-01-31",
    "_ga_ABCDE",
    "d1ee7d0d-3ca9-fbb4-720b-5312d487185b",
    [],
    ["balance"],
    ["balance", "bogus"],
    ["tok1", "tok2"],
    [1],
    {},
    {"k": 1},
    {"pa_amount": 10},
    {"pa_amount": "10"},
    {"pa_loginid": "CR1", "pa_remarks": "ok"},
    {"utm_source": "anything at all!"},
    {"residence": "KE"},
    {"_ga": "GA1.2.3", "fbc": "bad value!"},
    {"bogus": 1},
]


def both_ways(request: dict[str, Any]) -> tuple[Any, Any]:
    text = json.dumps(request)
    return json.loads(text), parse_frame(text)


def test_simulator_knows_exactly_the_schema_fields() -> None:
    for call, spec in SPECS.items():
        schema = load_schema(call, "send")
        assert set(spec.fields) == set(schema["properties"]), call
        assert set(spec.required) == set(schema.get("required", [])), call
        assert spec.auth_required == bool(schema.get("auth_required")), call
        assert set(spec.scopes) == set(schema.get("auth_scopes", [])), call
        sensitive = {k for k, v in schema["properties"].items() if v.get("sensitive")}
        assert set(spec.sensitive) == sensitive, call


@pytest.mark.parametrize("call", sorted(SPECS))
def test_validator_agrees_with_send_schema(call: str) -> None:
    import jsonschema  # type: ignore[import-untyped]  # no stubs in the locked dev tools

    schema = load_schema(call, "send")
    official = jsonschema.Draft4Validator(schema)
    spec = SPECS[call]
    base = VALID[call]
    candidates: list[dict[str, Any]] = [base, json.loads(json.dumps(load_schema(call, "example")))]
    for key in schema.get("required", []):
        candidates.append({k: v for k, v in base.items() if k != key})
    candidates.append({**base, "unknown_field": 1})
    candidates.append({**base, "req_id": 3, "passthrough": {"a": [1]}})
    for key, value in itertools.product(schema["properties"], VALUES):
        candidates.append({**base, key: value})
    nested = [k for k, v in schema["properties"].items() if v.get("type") == "object" and "properties" in v]
    for key in nested:
        for sub, value in itertools.product(schema["properties"][key]["properties"], VALUES):
            candidates.append({**base, key: {sub: value}})
    checked = 0
    for request in candidates:
        as_float, as_decimal = both_ways(request)
        expected = official.is_valid(as_float)
        errors = validate(spec, as_decimal)
        assert (not errors) == expected, (
            request,
            errors,
            [e.message for e in official.iter_errors(as_float)],
        )
        if not expected:
            missing = {e.path[0] if e.path else None for e in official.iter_errors(as_float)}
            assert missing, request
        checked += 1
    assert checked > 100


async def test_every_call_replies_per_receive_schema(
    connect_client: ConnectClient, sim: DerivSimulator, control: Control
) -> None:
    """One pass over every call the simulator serves; the client checks each message on receipt."""
    VALIDATED.clear()
    anon = await connect_client(sim)
    assert (await anon.call({"ping": 1}))["ping"] == "pong"
    await anon.call({"time": 1})
    await anon.call({"website_status": 1, "subscribe": 1})
    await anon.call({"paymentagent_list": "ke"})
    await anon.call({"verify_email": "new@person.sim", "type": "account_opening"})
    agent = await connect_client(sim, AGENT_TOKEN)
    await agent.call({"balance": 1, "subscribe": 1})
    await agent.call({"balance": 1, "account": "all"})
    await agent.call({"transaction": 1, "subscribe": 1})
    await agent.call({"get_settings": 1})
    await agent.call({"account_list": 1})
    await agent.call({"paymentagent_details": 1})
    alice = await connect_client(sim, ALICE_TOKEN)
    await alice.call({"paymentagent_details": 1})  # admin scope missing: an error reply
    await alice.call({"get_settings": 1})
    await alice.call({"paymentagent_withdraw_justification": 1, "message": "need cash"})
    await agent.call(
        {"paymentagent_transfer": 1, "amount": 12.5, "currency": "USD", "transfer_to": ALICE, "dry_run": 1}
    )
    await agent.call(
        {
            "paymentagent_transfer": 1,
            "amount": 12.5,
            "currency": "USD",
            "transfer_to": ALICE,
            "description": "x",
        }
    )
    await alice.call({"verify_email": ALICE_EMAIL, "type": "paymentagent_withdraw"})
    code = await control.code(ALICE)
    request = {"paymentagent_withdraw": 1, "amount": 10, "currency": "USD", "paymentagent_loginid": AGENT}
    await alice.call({**request, "verification_code": code, "dry_run": 1})
    await alice.call({**request, "verification_code": code})
    await agent.stream("balance")
    await agent.stream("transaction")
    await agent.call({"statement": 1, "description": 1})
    await agent.call({"forget_all": ["balance", "transaction"]})
    await agent.call({"forget": "d1ee7d0d-3ca9-fbb4-720b-5312d487185b"})
    virtual = await connect_client(sim, "sim-virtual-token")
    await virtual.call({"get_settings": 1})
    await agent.call({"logout": 1})
    await agent.call({"authorize": "bad-token"})
    missing = set(SPECS) - set(VALIDATED)
    assert not missing, f"calls with no reply checked against receive.json: {missing}"

"""The control API, accounts files and the `penpay sim deriv` command."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from deriv_gateway.simulator import DerivSimulator
from penpay.cli import build_parser
from tests.deriv_sim.helpers import ConnectClient, Control, MakeSim

from .helpers import AGENT, ALICE, Client

pytestmark = pytest.mark.integration


async def test_health_config_and_clock(control: Control, sim: DerivSimulator, client: Client) -> None:
    assert sim.ports is not None
    health = await control.get("/health")
    assert health["status"] == "ok" and health["ws_port"] == sim.ports.ws and health["connections"] == 1
    config = await control.post("/config", {"request_timeout": 3, "rate_limits": {"general_minutely": 7}})
    assert config["request_timeout"] == 3 and config["rate_limits"]["general_minutely"] == 7
    assert await control.get("/stats/rate_limited") == {"total": 0, "by_call": {}}
    before = (await client.call({"time": 1}))["time"]
    await control.post("/clock", {"advance": 86400})
    assert (await client.call({"time": 1}))["time"] - before >= 86400


async def test_accounts_crud_and_adjust(
    control: Control, connect_client: ConnectClient, sim: DerivSimulator
) -> None:
    accounts = await control.get("/accounts")
    assert {a["loginid"] for a in accounts["accounts"]} >= {AGENT, ALICE, "VRTC90000001"}
    assert any(t["token"] == "sim-agent-token" for t in accounts["tokens"])
    created = await control.post(
        "/accounts",
        {
            "accounts": [
                {
                    "loginid": "CR55500001",
                    "balance": "12.34",
                    "first_name": "Eve",
                    "last_name": "K",
                    "user_id": 555,
                }
            ],
            "tokens": [{"token": "eve-token", "loginid": "CR55500001", "scopes": ["read", "payments"]}],
        },
        status=201,
    )
    assert created["loaded"] == ["CR55500001"]
    eve = await connect_client(sim, "eve-token")
    assert (await eve.call({"balance": 1, "subscribe": 1}))["balance"]["balance"] == 12.34
    entry = await control.post(
        "/accounts/CR55500001/adjust", {"amount": "7.66", "note": "top up"}, status=201
    )
    assert entry["balance_after"] == "20.00"
    assert (await eve.stream("balance"))["balance"]["balance"] == 20.0
    assert (await control.get("/books/summary"))["balanced"] is True
    bad = await control.post("/accounts", {"accounts": [{"loginid": "nope"}]}, status=400)
    assert "bad loginid" in bad["error"]
    await control.post("/accounts/CR55500001/adjust", {"amount": "-100"}, status=409)


async def test_accounts_from_file(make_sim: MakeSim, connect_client: ConnectClient, tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(
        json.dumps(
            {
                "accounts": [
                    {
                        "loginid": "CR1",
                        "balance": 500,
                        "first_name": "Pat",
                        "last_name": "Agent",
                        "payment_agent": {"name": "Pat PA", "countries": ["ke"], "max_withdrawal": "100"},
                    },
                    {"loginid": "CR2", "balance": "0.00", "first_name": "Sam", "last_name": "Client"},
                ],
                "tokens": [{"token": "pat", "loginid": "CR1", "scopes": ["payments", "read"]}],
            }
        )
    )
    sim = await make_sim(accounts_file=path)
    pat = await connect_client(sim, "pat")
    reply = await pat.call(
        {"paymentagent_transfer": 1, "amount": 101, "currency": "USD", "transfer_to": "CR2"}
    )
    assert reply["error"]["message"] == "Invalid amount. Minimum is 10, maximum is 100."
    reply = await pat.call(
        {"paymentagent_transfer": 1, "amount": 100, "currency": "USD", "transfer_to": "cr2"}
    )
    assert reply["client_to_full_name"] == "Sam Client"


async def test_connections_drop(control: Control, client: Client) -> None:
    assert (await control.post("/connections/drop"))["dropped"] == 1
    with pytest.raises(ConnectionClosed):
        await client.recv(timeout=2)


def test_cli_registers_sim_deriv(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"kind": "duplicate", "call": "ping"}]))
    args = build_parser().parse_args(
        ["sim", "deriv", "--port", "0", "--seed", "5", "--control-port", "0", "--faults", str(faults)]
    )
    from penpay.commands import sim_deriv

    assert args.handler is sim_deriv.run
    config = sim_deriv.build_config(args)
    assert (config.port, config.seed, config.control_port, config.compression) == (0, 5, 0, True)
    assert config.faults == [{"kind": "duplicate", "call": "ping"}]
    config = sim_deriv.build_config(
        build_parser().parse_args(["sim", "deriv", "--no-control", "--no-rate-limit", "--no-compression"])
    )
    assert config.control_port is None and not config.rate_limits.enabled and not config.compression
    assert (config.host, config.port) == ("127.0.0.1", 8765)


async def test_cli_process_end_to_end() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "penpay",
        "sim",
        "deriv",
        "--port",
        "0",
        "--control-port",
        "0",
        "--seed",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        info = json.loads(line)
        async with connect(info["ws_url"] + "?app_id=1089&l=EN") as ws:
            client = Client(ws)
            await client.login("sim-agent-token")
            reply = await client.call({"balance": 1})
            assert reply["balance"] == {"balance": 50000.0, "currency": "USD", "loginid": AGENT}
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0

"""A full run at DEBUG, every logger captured: no secret appears in any log line."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from mpesa_adapter import errors
from mpesa_adapter.security import stk_password, stk_timestamp
from tests.mpesa_adapter.conftest import CONSUMER_SECRET, build_harness, phone

pytestmark = pytest.mark.integration


async def test_logs_of_a_full_run_contain_no_secret(
    db: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen_tokens: set[str] = set()
    async for h in build_harness(db, sim_overrides={"invalid_token_style": "per_api"}):
        cache = h.client.token_cache
        original = cache.get

        async def spy(fetch, original=original):  # type: ignore[no-untyped-def]
            token = await original(fetch)
            seen_tokens.add(token)
            return token

        cache.get = spy  # type: ignore[method-assign]

        _, checkout = await h.push(phone(), 90)
        await h.drain()
        await h.confirmer.confirm_stk(checkout)
        async with h.session.post(f"{h.sim.base_url}/__control__/oauth/expire") as resp:
            await resp.read()
        _, ocid = await h.payout(phone(), 150)  # 401.002.01 echoes the stale token: must be scrubbed
        await h.drain()
        await h.confirmer.confirm_b2c(ocid)
        await h.drain()
        await h.client.account_balance()
        await h.drain()
        h.sim.add_fault("spike_arrest", api="stk_query")
        await h.client.stk_query(checkout)  # a retry, logged
        with pytest.raises(errors.AuthenticationFailed):
            await h.make_client(consumer_secret="a-wrong-consumer-secret").access_token()
        await h.post_raw("/payments/stk", {"x": 1}, secret="guessed-secret-token")

        cfg = h.daraja_config
        credential = h.client.security_credential()
        # Any instant: the first 40 characters of the Password encode the shortcode and passkey only.
        ts = stk_timestamp(datetime(2026, 3, 1, tzinfo=UTC))
        secrets_ = {
            "consumer secret": CONSUMER_SECRET,
            "wrong consumer secret": "a-wrong-consumer-secret",
            "passkey": cfg.passkey,
            "initiator password": cfg.initiator_password,
            "SecurityCredential": credential,
            "STK Password": stk_password(cfg.shortcode, cfg.passkey, ts)[:40],
            "Bearer": "Bearer ",
            "Basic": "Basic ",
            **{f"access token {i}": t for i, t in enumerate(seen_tokens)},
        }
        assert len(seen_tokens) >= 2
        lines = [f"{r.name}: {r.getMessage()}" for r in caplog.records]
        lines += [caplog.text]
        for name, secret in secrets_.items():
            leaked = [line for line in lines if secret in line]
            assert not leaked, f"{name} in logs: {leaked[:2]}"
        # No logger, the simulator's included, shows the callback path secret either.
        assert not [line for line in lines if h.secret in line]
        ours = [f"{r.getMessage()}" for r in caplog.records if not r.name.startswith("penpay.sim")]
        assert any("daraja" in line for line in ours) and any("/payments/stk/***" in line for line in ours)
        assert repr(cfg).count(CONSUMER_SECRET) == 0 and cfg.passkey not in repr(cfg)

"""The soak's schedule: the same seed gives the same plan, and the plan covers every fault and outcome."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from deriv_gateway.simulator.rest.faults import RestFault
from proving.chaos.schedule import (
    DEPOSIT_SCENARIOS,
    FAULT_KINDS,
    REST_RULES,
    REST_SETTLEMENTS,
    TX_PER_USER,
    WITHDRAWAL_SCENARIOS,
    build_schedule,
)

pytestmark = pytest.mark.unit


def test_the_same_seed_gives_the_same_schedule() -> None:
    first = build_schedule(seed=42, transactions=200, duration=90)
    again = build_schedule(seed=42, transactions=200, duration=90)

    assert again == first
    assert again.fingerprint() == first.fingerprint()
    assert again.lines(traffic=True) == first.lines(traffic=True)


def test_another_seed_gives_another_schedule() -> None:
    one = build_schedule(seed=42, transactions=200, duration=90)
    other = build_schedule(seed=43, transactions=200, duration=90)

    assert other.fingerprint() != one.fingerprint()
    assert [f.describe() for f in other.faults] != [f.describe() for f in one.faults]


def test_every_fault_kind_strikes_and_the_gateway_leader_is_killed() -> None:
    schedule = build_schedule(seed=7, transactions=200, duration=90)

    assert {f.kind for f in schedule.faults} == set(FAULT_KINDS)
    assert any(f.kind == "kill" and f.target == "gateway-leader" for f in schedule.faults)
    assert all(0 < f.at < schedule.duration for f in schedule.faults)


def test_rest_users_meet_every_rest_fault_the_simulator_takes() -> None:
    """Over a long soak every REST fault rule strikes (pending settling to each outcome), on
    transfers and withdrawals, each a rule the REST simulator's control API accepts as it is."""
    schedule = build_schedule(seed=2026, transactions=2000, duration=900)
    rules = [f.params for f in schedule.faults if f.kind == "rest_rule"]

    assert {r["kind"] for r in rules} == set(REST_RULES)
    assert {r["settle_to"] for r in rules if r["kind"] == "pending"} == set(REST_SETTLEMENTS)
    assert {r["endpoint"] for r in rules} == {"transfer", "withdraw"}
    assert all(1 <= r["retry_in"] <= 5 for r in rules if r["kind"] == "rate_limit")
    for index, rule in enumerate(rules):
        assert RestFault.from_dict(dict(rule), f"r{index}", seed=1).kind == rule["kind"]
    assert {f.target for f in schedule.faults if f.kind == "rest_rule"} == {"deriv-rest-sim"}


def test_database_and_redis_outages_do_not_overlap() -> None:
    schedule = build_schedule(seed=3, transactions=2000, duration=900)
    outages = sorted(f.at for f in schedule.faults if f.kind in ("redis_restart", "mariadb_restart"))

    assert len(outages) >= 2
    assert all(later - earlier >= 12.0 for earlier, later in itertools.pairwise(outages))


def test_a_long_soak_covers_every_scenario_of_both_flows() -> None:
    schedule = build_schedule(seed=2026, transactions=2000, duration=900)
    planned = schedule.scenario_counts()

    assert {f"deposit:{name}" for name, _ in DEPOSIT_SCENARIOS} <= set(planned)
    assert {f"withdrawal:{name}" for name, _ in WITHDRAWAL_SCENARIOS} <= set(planned)


def test_an_unsolicited_paybill_payment_comes_from_a_soak_user_and_moves_no_draw() -> None:
    """The payer is a soak user (so the operator can find whose money it is), chosen without a draw:
    the faults are the ones the seed gave before the payer was added, the payer aside."""
    import random

    from proving.chaos.schedule import _faults

    schedule = build_schedule(seed=7, transactions=40, duration=90)
    unsolicited = [f for f in schedule.faults if f.kind == "paybill_unsolicited"]
    drawn = _faults(random.Random("penpay-chaos:7:faults"), 90)

    assert unsolicited
    assert {f.params["phone"] for f in unsolicited} <= {u.phone for u in schedule.users}
    # the first is paid again by a stranger (for the operator to refund); no user has that phone
    assert [("stranger_phone" in f.params) for f in unsolicited] == [True, False]
    assert unsolicited[0].params["stranger_phone"] not in {u.phone for u in schedule.users}
    payers = ("phone", "stranger_phone")
    assert [
        (f.at, f.kind, f.target, {k: v for k, v in f.params.items() if k not in payers})
        for f in schedule.faults
    ] == [(f.at, f.kind, f.target, f.params) for f in drawn]
    assert [f.params["account"] for f in unsolicited] == ["UNKNOWN101167", "UNKNOWN949713"]


def test_no_user_is_planned_past_the_compliance_velocity_and_phones_are_unique() -> None:
    schedule = build_schedule(seed=11, transactions=500, duration=200)
    per_user = Counter(t.user for t in schedule.traffic)

    assert max(per_user.values()) <= TX_PER_USER
    assert len({u.phone for u in schedule.users}) == len(schedule.users)
    assert len({u.loginid for u in schedule.users}) == len(schedule.users)
    assert all(u.phone.startswith("2547") and not u.phone.startswith("2547000") for u in schedule.users)


def test_the_command_prints_the_same_schedule_for_the_same_seed(capsys: pytest.CaptureFixture[str]) -> None:
    from penpay.cli import main

    argv = ["chaos", "--seed", "5", "--transactions", "60", "--duration", "30", "--print-schedule"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert main(argv) == 0
    again = capsys.readouterr().out

    assert again == first
    assert "fingerprint=" in first and "kill gateway-leader" in first

"""Issue 4, "Nothing lost, nothing doubled": a load of orders of every kind through two
instances of every service while instances are killed, the broker crashes once and
messages are delivered twice; then every order must have ended, exactly once, and every
message no consumer could process must be in a dead-letter topic.

FAULTS_ORDERS (default 150) sets the load; FAULTS_SEED replays a run's choices
(kinds, timings, victims).
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

from tests.faults.chaos import ChaosLimits, unleash_chaos
from tests.faults.invariants import every_violation
from tests.faults.load import plan_load, publish_load
from tests.faults.report import figures_of, print_figures, summarise, write_figures
from tests.faults.stack import PAYMENT_TIMEOUT_S, SUSPENDED_ICCIDS, Stack
from tests.faults.state import baseline_before_the_load, take_snapshot, wait_until_settled

ORDERS = int(os.environ.get("FAULTS_ORDERS", "150"))
SEED = int(os.environ.get("FAULTS_SEED", str(random.randrange(1_000_000))))
# The load is spread so that the chaos meets it: at least 20 s, about 25 orders a second.
LOAD_SECONDS = float(os.environ.get("FAULTS_LOAD_S", str(max(20.0, ORDERS / 25))))
SETTLE_WITHIN_S = float(os.environ.get("FAULTS_QUIESCE_S", str(max(120.0, ORDERS / 25))))

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


@pytest.mark.timeout(int(180 + LOAD_SECONDS + SETTLE_WITHIN_S + PAYMENT_TIMEOUT_S + ORDERS * 0.05))
async def test_nothing_is_lost_and_nothing_doubled_under_faults(stack: Stack) -> None:
    rng = random.Random(SEED)
    plan = plan_load(ORDERS, LOAD_SECONDS, SUSPENDED_ICCIDS, rng)
    limits = ChaosLimits(
        seconds=LOAD_SECONDS, max_kills=max(6, ORDERS // 50), max_duplicates=max(30, ORDERS // 5)
    )
    baseline = await baseline_before_the_load(stack)
    started = time.monotonic()

    load, chaos = await asyncio.gather(
        publish_load(stack.kafka.client(), plan), unleash_chaos(stack, limits, rng)
    )
    loaded = time.monotonic()
    # Never-confirmed payments expire PAYMENT_TIMEOUT_S after the last one is placed.
    settled = await wait_until_settled(stack, plan, SETTLE_WITHIN_S + PAYMENT_TIMEOUT_S)
    quiet = time.monotonic()
    snapshot = await take_snapshot(stack, baseline)
    violations = every_violation(snapshot, plan)

    seconds = {"load and chaos": loaded - started, "settling": quiet - loaded}
    figures = figures_of(plan, load, chaos, settled, snapshot, violations, seconds, SEED)
    print_figures(figures)
    print(f"figures written to {write_figures(figures)}")
    assert violations == {}, "invariants violated:\n" + summarise(violations)

"""The scenario of the fault suite, on one broker or three: a load of orders of every kind
through two instances of every service while instances are killed, the brokers (or the
broker) crash, and messages are delivered twice; then every order must have ended, exactly
once, and every message no consumer could process must be in a dead-letter topic.

FAULTS_ORDERS (default 150) sets the load; FAULTS_SEED replays a run's choices
(kinds, timings, victims).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

from tests.faults.chaos import ChaosLimits, unleash_chaos
from tests.faults.cluster_chaos import PAUSE_S
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
# What pytest allows a run: the load, the settling, the chaos's own waits, and a margin.
TIMEOUT_S = int(240 + LOAD_SECONDS + SETTLE_WITHIN_S + PAYMENT_TIMEOUT_S + PAUSE_S + ORDERS * 0.05)


async def nothing_is_lost_and_nothing_doubled(stack: Stack) -> dict[str, Any]:
    """The run's figures (report.py), once every invariant is found to hold."""
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
    return figures

"""The end of every run: the fault suite's invariants over what the load left in the
databases and topics (every order terminal, one top-up per paid order, money balances,
nothing unpublished, nothing dead-lettered), and the benchmark's own: with a token that
always succeeds and a fresh line per order, every order COMPLETED."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from tests.faults.invariants import every_violation
from tests.faults.load import Kind, LoadPlan, Request
from tests.faults.stack import Stack
from tests.faults.state import Baseline, take_snapshot, wait_until_settled


@dataclass(frozen=True)
class Verdict:
    orders: int
    by_state: dict[str, int]
    settled: str
    violations: dict[str, list[str]]

    @property
    def count(self) -> int:
        return sum(len(found) for found in self.violations.values())

    def figures(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "by_state": self.by_state,
            "settled": self.settled,
            "violation_count": self.count,
            # The first few of each: a broken run can have thousands.
            "violations": {check: found[:20] for check, found in self.violations.items()},
        }


async def check(
    stack: Stack, requests: list[dict[str, Any]], baseline: Baseline, settle_s: float
) -> Verdict:
    plan = LoadPlan([Request(Kind.CARD, body) for body in requests], [], [], 0)
    progress = await wait_until_settled(stack, plan, settle_s)
    snapshot = await take_snapshot(stack, baseline)
    violations = every_violation(snapshot, plan)
    orders = snapshot.rows("orders", "orders") or []
    not_completed = [
        f"{row['order_id']} ended {row['state']}" for row in orders if row["state"] != "COMPLETED"
    ]
    if not_completed:
        violations["every_order_completed"] = not_completed
    by_state = Counter(row["state"] for row in orders)
    return Verdict(len(requests), dict(sorted(by_state.items())), str(progress), violations)

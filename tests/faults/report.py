"""The figures of a run: printed as a table and kept as JSON in test-results/."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.local.kafka import REPO_ROOT
from tests.faults.chaos_figures import ChaosFigures
from tests.faults.load import MARKER_PREFIX, LoadFigures, LoadPlan
from tests.faults.state import Progress, Snapshot

RESULTS = REPO_ROOT / "test-results"
EXAMPLES_SHOWN = 5


def figures_of(
    plan: LoadPlan,
    load: LoadFigures,
    chaos: ChaosFigures,
    settled: Progress,
    snapshot: Snapshot,
    violations: dict[str, list[str]],
    seconds: dict[str, float],
    seed: int,
) -> dict[str, Any]:
    orders = snapshot.rows("orders", "orders") or []
    rejected = snapshot.rows("orders", "rejected_requests") or []
    state_of = {row["request_id"]: "REJECTED" for row in rejected}
    state_of |= {row["request_id"]: row["state"] for row in orders}
    endings: dict[str, Counter[str]] = {}
    for request in plan.requests:
        ending = state_of.get(request.request_id, "no answer")
        endings.setdefault(request.kind.value, Counter())[ending] += 1
    # Why orders were refunded: TOPUP_PENDING (the top-up failed) or EXPIRED (a late capture).
    refunded_from = Counter(
        row["from_state"]
        for row in snapshot.rows("orders", "order_transitions") or []
        if row["to_state"] == "REFUND_PENDING"
    )
    marker = MARKER_PREFIX.encode()
    return {
        "seed": seed,
        "orders": len(plan.requests),
        "published messages": load.published,
        "publish retries": load.send_retries,
        "accepted": len(orders),
        "rejected": len(rejected),
        "by outcome": dict(sorted(Counter(row["state"] for row in orders).items())),
        "requests by kind": dict(sorted(plan.kinds().items())),
        "endings by kind": {kind: dict(sorted(c.items())) for kind, c in sorted(endings.items())},
        "refunds after": dict(sorted(refunded_from.items())),
        "repeated requests": plan.repeated_requests,
        "kills": chaos.kills,
        "service restarts": chaos.service_restarts,
        "broker restarts": chaos.broker_restarts,
        "partition leaders killed": chaos.leader_kills,
        "controllers killed": chaos.controller_kills,
        "postgres restarts": chaos.postgres_restarts,
        "services paused": chaos.pauses,
        "zombie commits refused": chaos.zombie_commits_refused,
        "seconds to recover": chaos.recoveries,
        "health while postgres was down": chaos.health_without_postgres,
        "duplicates injected": chaos.duplicates_injected,
        "malformed injected": len(plan.malformed),
        "dead letters found": len(snapshot.dead_letters),
        "dead letters of malformed messages": sum(marker in d.value for d in snapshot.dead_letters),
        "settled": str(settled),
        "seconds": {name: round(value, 1) for name, value in seconds.items()},
        "invariant violations": sum(len(v) for v in violations.values()),
        "violated invariants": sorted(violations),
        "violations": violations,
        "chaos log": chaos.log,
        "load failures": load.failures,
    }


def print_figures(figures: dict[str, Any]) -> None:
    shown = {k: v for k, v in figures.items() if k not in ("violations", "chaos log")}
    width = max(map(len, shown))
    print("\n--- faults: figures " + "-" * 50)
    for name, value in shown.items():
        print(f"{name:<{width}}  {value}")
    print("--- chaos " + "-" * 60)
    print("\n".join(figures["chaos log"]))


def summarise(violations: dict[str, list[str]]) -> str:
    """Each violated invariant, how often, and its first few examples."""
    lines = []
    for check, found in violations.items():
        lines.append(f"{check}: {len(found)}")
        lines += [f"    {example}" for example in found[:EXAMPLES_SHOWN]]
        if len(found) > EXAMPLES_SHOWN:
            lines.append(f"    ... and {len(found) - EXAMPLES_SHOWN} more (see the JSON)")
    return "\n".join(lines)


def write_figures(figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return path

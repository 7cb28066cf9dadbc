"""`make bench` in miniature, so it never rots: a few seconds of every phase on a stack of
its own, then the report must hold every figure and the run no invariant violation.
Nothing here is about speed: the targets are the report's business, not a test's."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.local.kafka import REPO_ROOT
from deploy.local.outside_world import SIMULATORS
from deploy.local.processes import SERVICES

pytestmark = [pytest.mark.bench, pytest.mark.e2e]

RESOURCES = (*SERVICES, *SIMULATORS, "kafka", "postgres")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], Path]:
    results = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--smoke", "--results", str(results)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    print(done.stdout[-5000:], done.stderr[-5000:])
    folders = list(results.iterdir())
    assert len(folders) == 1, f"no results (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return done.returncode, json.loads((folders[0] / "results.json").read_text()), folders[0]


def _phases(figures: dict[str, Any]) -> list[dict[str, Any]]:
    saga = figures["saga"]
    return [figures["raw_relay"]["closed_loop"], saga["closed_loop"], *saga["open_loop"]]


@pytest.mark.timeout(300)
def test_the_smoke_run_ends_with_no_invariant_violated(
    smoke_run: tuple[int, dict[str, Any], Path],
) -> None:
    code, figures, _ = smoke_run
    assert figures["invariants"]["violations"] == {}
    assert figures["invariants"]["orders"] == figures["invariants"]["by_state"]["COMPLETED"]
    assert code == 0


def test_both_the_saga_and_the_raw_relay_complete_orders(
    smoke_run: tuple[int, dict[str, Any], Path],
) -> None:
    _, figures, _ = smoke_run
    assert figures["raw_relay"]["closed_loop"]["throughput_per_s"] > 0
    assert figures["saga"]["closed_loop"]["throughput_per_s"] > 0
    # At 10 sagas/s, then at a quarter, half and three quarters of the maximum.
    assert [p.get("rate") or p["fraction"] for p in figures["saga"]["open_loop"]] == [
        10.0, 0.25, 0.5, 0.75
    ]  # fmt: skip
    assert figures["ratio_to_raw_relay"] > 0


def test_every_phase_reports_latencies_in_order(
    smoke_run: tuple[int, dict[str, Any], Path],
) -> None:
    _, figures, _ = smoke_run
    for phase in _phases(figures):
        latency = phase["latency_ms"]
        assert all(math.isfinite(latency[p]) for p in ("p50", "p95", "p99")), phase["name"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"], phase["name"]


def test_cpu_per_saga_and_peak_rss_are_reported_for_every_process(
    smoke_run: tuple[int, dict[str, Any], Path],
) -> None:
    _, figures, _ = smoke_run
    for name in RESOURCES:
        assert figures["cpu_s_per_saga"][name] > 0, name
        assert figures["peak_rss_mb"][name] > 0, name
    relay = figures["raw_relay"]["closed_loop"]["cpu_s_per_saga"]
    assert all(relay[f"raw-{role}"] > 0 for role in SERVICES)


def test_the_outside_worlds_cpu_is_reported_apart_from_ours(
    smoke_run: tuple[int, dict[str, Any], Path],
) -> None:
    _, figures, _ = smoke_run
    parties = figures["cpu_s_per_saga_by_party"]
    simulators = sum(figures["cpu_s_per_saga"][name] for name in SIMULATORS)
    services = sum(figures["cpu_s_per_saga"][name] for name in SERVICES)
    assert parties["outside world"] == pytest.approx(simulators, abs=1e-5)
    assert parties["ours"] == pytest.approx(services, abs=1e-5)


def test_the_batches_the_services_took_are_reported(
    smoke_run: tuple[int, dict[str, Any], Path],
) -> None:
    _, figures, _ = smoke_run
    seen = figures["saga"]["batch_sizes"]["by_topic"]
    assert "orders orders.commands.v1" in seen
    assert all(s["batches"] > 0 and 1 <= s["p50"] <= s["p99"] for s in seen.values())


def test_postgresql_tells_the_statements_and_transactions_of_each_service_per_saga(
    smoke_run: tuple[int, dict[str, Any], Path],
) -> None:
    _, figures, _ = smoke_run
    counted = figures["saga"]["statements"]["by_service"]
    assert set(counted) == {*SERVICES, *SIMULATORS}
    for name, seen in counted.items():
        # Every service and simulator writes in a saga: at least one transaction, and more
        # statements than transactions (BEGIN and COMMIT are statements too).
        assert seen["transactions_per_saga"] > 0, name
        assert seen["statements_per_saga"] > seen["transactions_per_saga"], name
        assert seen["top"], name
        assert all(t["per_saga"] > 0 for t in seen["top"]), name
    assert any(t["query"].startswith("INSERT INTO outbox") for t in counted["orders"]["top"])


def test_the_report_holds_the_targets_the_machine_and_a_chart(
    smoke_run: tuple[int, dict[str, Any], Path],
) -> None:
    _, figures, folder = smoke_run
    assert len(figures["targets"]) == 5
    assert all(isinstance(target["met"], bool) for target in figures["targets"])
    assert figures["machine"]["cores"] >= 1
    assert figures["machine"]["git_commit"]
    assert (folder / "chart.png").stat().st_size > 0

"""However the last `make run` ended, the next one starts: nothing outlives a run killed
with SIGKILL, a run killed halfway leaves nothing half-made, what an earlier run left is
stopped, and a second clone is told which ports are busy and what to set instead."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import psutil  # type: ignore[import-untyped]
import pytest

from deploy.local.kafka import LocalKafka
from deploy.local.leftovers import MARKER
from deploy.local.processes import ServiceProcess
from tests.anywhere.clones import FIRST_START_S, Clone
from tests.anywhere.conftest import MakeClone

pytestmark = [pytest.mark.anywhere, pytest.mark.timeout(2 * FIRST_START_S + 180)]


@pytest.mark.parametrize(
    "ending",
    [
        pytest.param(signal.SIGKILL, id="SIGKILL of its process group (an OOM kill)"),
        pytest.param(signal.SIGHUP, id="SIGHUP (its terminal closed)"),
    ],
)
def test_nothing_outlives_make_run_however_it_ends_and_the_next_run_starts(
    clones: MakeClone, ending: signal.Signals
) -> None:
    clone = clones("ended/top-up billing", mode=0o755)
    run = clone.make_run_until_ready(DB="postgres")
    run.signal_group(ending)
    run.wait(60)

    clone.wait_until_nothing_runs(within=30)
    again = clone.make_run_until_ready(DB="postgres")
    try:
        assert set(clone.healthy().values()) == {200}, again.output
        assert "Traceback" not in again.output
    finally:
        again.stop_with_ctrl_c()
    # A broker the kernel stopped still dumps its classes, with nobody left to publish them.
    assert not list((clone.root / "var/kafka/cds").glob("*.tmp"))


@pytest.mark.parametrize(
    "moment",
    ["starting Kafka", "starting postgres", "everything up, then all killed at once"],
)
def test_make_run_recovers_from_a_run_killed_at_any_moment(clones: MakeClone, moment: str) -> None:
    clone = clones("halfway/top-up billing", mode=0o755)
    run = clone.start_make_run(DB="postgres")
    if moment.startswith("starting"):
        run.wait_for(moment, FIRST_START_S)  # the broker's storage or the cluster half-made
        run.signal_group(signal.SIGKILL)
    else:
        run.wait_until_ready()
        kill_at_once([psutil.Process(run.process.pid), *clone.processes()])  # stale pid files
    run.wait(10)

    again = clone.make_run_until_ready(DB="postgres")
    try:
        assert set(clone.healthy().values()) == {200}, again.output
    finally:
        again.stop_with_ctrl_c()


def test_make_run_stops_what_an_earlier_run_left_running_then_starts(
    clones: MakeClone,
) -> None:
    clone = clones("leftovers/top-up billing", mode=0o755)
    with leftovers_of_an_earlier_run(clone) as left:
        run = clone.make_run_until_ready()
        try:
            line = next(x for x in run.output.splitlines() if x.startswith("stopped what"))
            for name, pid in left.items():
                assert f"{name} (pid {pid})" in line
                assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
            assert set(clone.healthy().values()) == {200}, run.output
        finally:
            run.stop_with_ctrl_c()


def test_a_second_clone_is_told_which_ports_are_busy_and_runs_on_the_ones_it_is_given(
    clones: MakeClone,
) -> None:
    first = clones("first/top-up billing", mode=0o755)
    second = clones("second/top-up billing", mode=0o755)
    second.ports = dict(first.ports)  # as two clones with the default ports would be
    run = first.make_run_until_ready()
    try:
        refused = second.make("run", timeout=FIRST_START_S)
        assert refused.returncode != 0
        complaint = next(x for x in refused.stdout.splitlines() if x.startswith("make run:"))
        kafka_port = first.ports["KAFKA_PORT"]
        assert f"{kafka_port} (KAFKA_PORT) by pid" in complaint
        assert f"make run in {first.root}" in complaint
        assert "Traceback" not in refused.stdout
        assert not second.processes()
        assert set(first.healthy().values()) == {200}

        remedy = re.search(r"make run ((?:[A-Z_]+=\d+ ?)+)$", complaint)
        assert remedy is not None, complaint
        for setting in remedy[1].split():
            variable, port = setting.split("=")
            second.ports[variable] = port
        beside = second.make_run_until_ready()
        try:
            assert set(second.healthy().values()) == {200}, beside.output
            assert set(first.healthy().values()) == {200}
        finally:
            beside.stop_with_ctrl_c()
    finally:
        run.stop_with_ctrl_c()


@contextmanager
def leftovers_of_an_earlier_run(clone: Clone) -> Iterator[dict[str, int]]:
    """A broker on the clone's own Kafka data, and an orders service that a `make run` of
    the clone started, both left running (as by an older version, or a platform without a
    parent-death signal); their names and pids."""
    kafka = LocalKafka(clone.root / "var/kafka/run", port=int(clone.ports["KAFKA_PORT"]))
    kafka.start()
    orders = ServiceProcess(
        "orders",
        int(clone.ports["ORDERS_PORT"]),
        env={MARKER: str(clone.root), "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers},
        log_path=clone.root.parent / "leftover-orders.log",
    )
    orders.start()
    try:
        orders.wait_healthy()
        assert kafka.pid is not None
        assert orders.process is not None
        yield {"kafka": kafka.pid, "orders": orders.process.pid}
    finally:
        orders.kill()
        kafka.kill()


def kill_at_once(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(processes, timeout=10)

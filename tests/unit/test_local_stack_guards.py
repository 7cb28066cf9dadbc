"""What `make run` checks before it starts anything: one run per clone, free ports (a busy
one named with its holder and the variable to set), values that are ports; and that the
processes it starts end with it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from deploy.local import leftovers
from deploy.local.errors import StackError, first_line
from deploy.local.kafka import free_port
from deploy.local.lock import is_held, only_run_in_this_clone
from deploy.local.ports import check_free, port_setting
from deploy.local.stack import kafka_brokers, wanted_ports


@pytest.fixture
def listener() -> Iterator[int]:
    """A port some process of ours listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_second_run_in_the_same_clone_is_refused_with_who_holds_it(tmp_path: Path) -> None:
    lock = tmp_path / "run" / "make-run.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        assert is_held(lock)
        refused = rf"already running in this clone \(pid {holder.pid},"
        with pytest.raises(StackError, match=refused), only_run_in_this_clone(lock):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert not is_held(lock)  # a SIGKILLed holder leaves a file, not a lock
    with only_run_in_this_clone(lock):
        assert is_held(lock)


HOLD_THE_LOCK = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from deploy.local.lock import only_run_in_this_clone
    with only_run_in_this_clone(Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(60)
    """
)


def test_a_busy_port_is_named_with_its_holder_and_a_free_one_to_set(listener: int) -> None:
    with pytest.raises(StackError) as refused:
        check_free({"KAFKA_PORT": listener, "ORDERS_PORT": free_port()})
    message = refused.value.summary
    assert f"port in use: {listener} (KAFKA_PORT) by pid {os.getpid()} (" in message
    suggested = int(message.rsplit("KAFKA_PORT=", 1)[1])
    assert suggested != listener
    check_free({"KAFKA_PORT": suggested})  # the suggestion is free
    assert "\n" not in message


def test_two_settings_on_one_port_and_values_that_are_not_ports_are_refused() -> None:
    with pytest.raises(StackError, match="ORDERS_PORT and KAFKA_PORT are both 9092"):
        check_free({"KAFKA_PORT": 9092, "ORDERS_PORT": 9092})
    for bad in ("abc", "0", "70000", "-1", "9092; rm -rf /"):
        with pytest.raises(StackError, match="KAFKA_PORT must be a port number"):
            port_setting({"KAFKA_PORT": bad}, "KAFKA_PORT", 9092)
    assert port_setting({}, "KAFKA_PORT", 9092) == 9092
    assert port_setting({"KAFKA_PORT": " 9192 "}, "KAFKA_PORT", 9092) == 9192


def test_a_child_started_to_die_with_its_parent_ends_when_the_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", START_A_CHILD_THEN_WAIT], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = psutil.Process(int(parent.stdout.readline()))
    assert child.is_running()
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    child.wait(timeout=10)  # raises psutil.TimeoutExpired if it outlives its parent


START_A_CHILD_THEN_WAIT = textwrap.dedent(
    """
    import signal, subprocess, time
    from deploy.local.lifetime import die_with_parent
    child = subprocess.Popen(["sleep", "120"], preexec_fn=die_with_parent(signal.SIGTERM),
                             start_new_session=True)
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


def test_leftovers_are_the_processes_a_run_of_this_clone_started_or_that_run_on_its_data(
    tmp_path: Path,
) -> None:
    data = tmp_path / "var/kafka/run/server.properties"
    ours = start_sleeper({leftovers.MARKER: str(tmp_path)})
    on_our_data = start_sleeper({}, str(data))
    another_clones = start_sleeper({leftovers.MARKER: str(tmp_path / "other")})
    beside_our_data = start_sleeper({}, f"{data}.bak")
    try:
        found = {p.pid for p in leftovers.find(tmp_path, [data])}
        assert ours.pid in found
        assert on_our_data.pid in found
        assert another_clones.pid not in found
        assert beside_our_data.pid not in found
        stopped = leftovers.stop([psutil.Process(ours.pid), psutil.Process(on_our_data.pid)])
        assert len(stopped) == 2
        assert ours.wait(5) is not None
        assert on_our_data.wait(5) is not None
        assert another_clones.poll() is None
    finally:
        for process in (ours, on_our_data, another_clones, beside_our_data):
            process.kill()
            process.wait()


def start_sleeper(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    code = "import time; time.sleep(120)"
    return subprocess.Popen([sys.executable, "-c", code, *args], env={**os.environ, **env})


def test_the_gist_of_a_complaint_is_its_first_error_line_cut_short() -> None:
    log = "INFO starting\nINFO more\nERROR Address already in use\nERROR then this\n"
    assert first_line(log, containing=("ERROR",)) == "ERROR Address already in use"
    assert first_line("one\ntwo\n", containing=("ERROR",)) == "two"
    assert first_line("", containing=("ERROR",)) == "(no output)"
    assert len(first_line("ERROR " + "x" * 5000, containing=("ERROR",))) == 300


def test_a_cluster_of_three_listens_on_kafka_port_and_the_two_after_it() -> None:
    ports = wanted_ports({"KAFKA_PORT": "9300"}, "sqlite", kafka_brokers({"KAFKA_BROKERS": "3"}))
    assert [ports[f"KAFKA_PORT{n}"] for n in ("", "_2", "_3")] == [9300, 9301, 9302]
    moved = wanted_ports({"KAFKA_PORT_3": "9500"}, "sqlite", 3)
    assert [moved[f"KAFKA_PORT{n}"] for n in ("", "_2", "_3")] == [9092, 9093, 9500]
    assert "KAFKA_PORT_2" not in wanted_ports({}, "sqlite")


@pytest.mark.parametrize("brokers", ["2", "three", "4"])
def test_kafka_brokers_is_one_or_three_and_anything_else_is_said_plainly(brokers: str) -> None:
    with pytest.raises(StackError, match=r"KAFKA_BROKERS must be 1 .* or 3"):
        kafka_brokers({"KAFKA_BROKERS": brokers})
